"""Finding 13 of the hardening review: login lockout was keyed on the client address only. Failures from
many addresses now also add up to a short global back-off, and the README says how to trust a proxy."""

from __future__ import annotations

import pytest

from kb.services import admin as admin_service
from tests.helpers import REPO


def test_failed_logins_from_many_addresses_add_up_to_a_short_global_back_off(app, client):
    rt = app.state.runtime  # the client started the app, which built it
    limit = rt.settings.login_max_failures * admin_service.EVERYONE_FAILURES_FACTOR
    for n in range(limit - 1):
        with pytest.raises(admin_service.LoginFailed):
            admin_service.log_in(rt, f"10.0.{n // 250}.{n % 250}", "wrong password")
    with pytest.raises(admin_service.EveryoneLockedOut) as locked:
        admin_service.log_in(rt, "10.9.9.9", "wrong password")
    assert 1 <= locked.value.seconds <= admin_service.MAX_EVERYONE_LOCKOUT_SECONDS
    with pytest.raises(admin_service.EveryoneLockedOut):
        admin_service.log_in(rt, "10.9.9.10", "another address, still slowed down")


def test_the_readme_says_how_to_trust_a_proxy():
    assert "--forwarded-allow-ips" in (REPO / "README.md").read_text()
