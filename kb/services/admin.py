"""Admin use cases: the password (from KB_ADMIN_PASSWORD or the first-run page), logging in with
lockout, the session secret every process shares, and the overview shown on the dashboard.

When `KB_ADMIN_PASSWORD` is set it is the password, but logins never compare against it directly:
each process stores its argon2 hash in the `setting` table once (only when the stored hash does not
already verify it, so a changed variable wins on the next start) and every login verifies against
that stored hash. One verification path for both ways of setting the password, and the stored record
carries a `version` that sessions are bound to, so changing the password ends every older session.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
from dataclasses import dataclass

from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from kb.db.store import admin as admin_store
from kb.errors import BadRequest, Conflict, RateLimited, Unauthorized
from kb.runtime import Runtime
from kb.security import hash_password, verify_password

log = logging.getLogger(__name__)

PASSWORD_KEY = "admin_password"
SECRET_KEY = "session_secret"
MIN_PASSWORD_LENGTH = 8
MAX_LOCKOUT_SECONDS = 3600.0
# All addresses together: a back-off that bounds guessing spread over many addresses. It starts later
# and stays short, so that where every client shares one address (a proxy kb does not trust) it slows
# logins down rather than locking the admin out for an hour.
EVERYONE = "*"
EVERYONE_FAILURES_FACTOR = 10
MAX_EVERYONE_LOCKOUT_SECONDS = 60.0
# Failures older than this are forgotten; longer than the longest lockout so doubling keeps working.
FORGET_FAILURES_AFTER_SECONDS = 24 * 3600.0


class LoginFailed(Unauthorized):
    code = "wrong_password"
    template = "Wrong password."

    def __init__(self) -> None:
        super().__init__(self.template)
        self.values: dict[str, object] = {}


class LockedOut(RateLimited):
    """Raised before the password is even checked while a client is locked out."""

    code = "login_locked"
    template = "Too many failed logins from your address. Try again in {seconds} seconds."

    def __init__(self, seconds: float) -> None:
        self.seconds = max(1, math.ceil(seconds))
        self.values = {"seconds": self.seconds}
        super().__init__(self.template.format(**self.values), headers={"Retry-After": str(self.seconds)})


class EveryoneLockedOut(LockedOut):
    """Raised while failed logins from all addresses together passed the global limit."""

    template = "Too many failed logins to this server. Try again in {seconds} seconds."


class PasswordRejected(BadRequest):
    """A new password that cannot be used; `template` and `values` let pages show it translated."""

    def __init__(self, template: str, *, code: str, **values: object) -> None:
        super().__init__(template.format(**values), code=code)
        self.template = template
        self.values = values


@dataclass
class _ProcessCache:
    secret: str | None = None
    configured_password_stored: bool = False


def _cache(rt: Runtime) -> _ProcessCache:
    cache = getattr(rt, "admin_cache", None)
    if cache is None:
        cache = rt.admin_cache = _ProcessCache()
    return cache


def lockout_seconds(failures: int, max_failures: int, first_lockout: float) -> float:
    """How long to lock a client out after `failures` in a row: 0 below the limit, then doubling, capped."""
    if failures < max_failures:
        return 0.0
    return min(first_lockout * 2 ** min(failures - max_failures, 20), MAX_LOCKOUT_SECONDS)


def store_configured_password(rt: Runtime) -> None:
    """Make the stored hash match `KB_ADMIN_PASSWORD` (once per process; a no-op when unset)."""
    cache = _cache(rt)
    configured = rt.settings.admin_password
    if configured is None or cache.configured_password_stored:
        return
    password = configured.get_secret_value()
    with rt.db.session() as session:
        stored = admin_store.get_setting(session, PASSWORD_KEY)
        if stored is None or not verify_password(stored["hash"], password):
            admin_store.put_setting(session, PASSWORD_KEY, _password_record(password, source="env"))
            admin_store.end_sessions(session)
            session.commit()
            log.info("admin password taken from KB_ADMIN_PASSWORD; older sessions are ended")
    cache.configured_password_stored = True


def prepare(rt: Runtime) -> None:
    """Start-up work that must not stop the app when the database is down (it is retried on first use)."""
    try:
        store_configured_password(rt)
        session_secret(rt)
    except SQLAlchemyError as exc:
        log.warning("admin settings not loaded at start-up, will retry: %s", exc)


def _password_record(password: str, *, source: str) -> dict[str, str]:
    return {"hash": hash_password(password), "version": secrets.token_urlsafe(12), "source": source}


def _stored_password(rt: Runtime) -> dict | None:
    store_configured_password(rt)
    with rt.db.session() as session:
        return admin_store.get_setting(session, PASSWORD_KEY)


def password_is_set(rt: Runtime) -> bool:
    """True once the admin password exists (from the environment or the first-run page)."""
    return rt.settings.admin_password is not None or _stored_password(rt) is not None


def check_first_run_is_private(rt: Runtime) -> None:
    """Refuse to serve the network while no admin password exists: its first visitor would become admin."""
    if not rt.settings.loopback_only and not password_is_set(rt):
        raise Conflict(
            f"kb would listen on {rt.settings.host} with no admin password set, so the first visitor of "
            "/admin/setup could make themselves admin. Set KB_ADMIN_PASSWORD, or run once with --host 127.0.0.1 "
            "and set the password at http://127.0.0.1/admin/setup.",
            code="password_not_set",
        )


def password_version(rt: Runtime) -> str | None:
    """The current password's version; a session made under another version is no longer valid."""
    stored = _stored_password(rt)
    return stored["version"] if stored else None


def set_first_password(rt: Runtime, password: str, confirmation: str) -> str:
    """The first-run page: set the password while none exists; returns its version (to log in with)."""
    if password_is_set(rt):
        raise Conflict("An admin password is already set. Log in instead.", code="password_already_set")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(
            "The password needs at least {count} characters.", code="password_too_short", count=MIN_PASSWORD_LENGTH
        )
    if password != confirmation:
        raise PasswordRejected("The two passwords differ.", code="password_mismatch")
    record = _password_record(password, source="setup")
    with rt.db.session() as session:
        stored = admin_store.add_setting_if_absent(session, PASSWORD_KEY, record)
        session.commit()
    if stored["version"] != record["version"]:
        raise Conflict("An admin password is already set. Log in instead.", code="password_already_set")
    return record["version"]


def log_in(rt: Runtime, client: str, password: str) -> str:
    """Check the password for `client` (an address); returns the password version for the session.

    Raises LockedOut while the client (or everyone) is locked (without checking the password), LoginFailed otherwise.
    """
    store_configured_password(rt)
    with rt.db.session() as session:
        left = admin_store.lock_seconds_left(session, client)
        everyone_left = admin_store.lock_seconds_left(session, EVERYONE)
        stored = admin_store.get_setting(session, PASSWORD_KEY)
    if left > 0:
        raise LockedOut(left)
    if everyone_left > 0:
        raise EveryoneLockedOut(everyone_left)
    if stored is None:
        raise Conflict("No admin password is set yet. Set one on the first-run page.", code="password_not_set")
    # Verified outside any transaction: argon2 takes tens of milliseconds on purpose.
    if verify_password(stored["hash"], password):
        with rt.db.session() as session:
            admin_store.clear_failures(session, client)
            admin_store.clear_failures(session, EVERYONE)
            session.commit()
        return stored["version"]
    lock, everyone_lock = _count_failure(rt, client)
    if lock:
        raise LockedOut(lock)
    if everyone_lock:
        raise EveryoneLockedOut(everyone_lock)
    raise LoginFailed()


def _count_failure(rt: Runtime, client: str) -> tuple[float, float]:
    """Count a failed login for the address and for everyone; the lockouts (seconds) that now start."""
    settings = rt.settings
    with rt.db.session() as session:
        failures = admin_store.record_failure(session, client, forget_after_seconds=FORGET_FAILURES_AFTER_SECONDS)
        lock = lockout_seconds(failures, settings.login_max_failures, settings.login_lockout_seconds)
        everyone = admin_store.record_failure(session, EVERYONE, forget_after_seconds=FORGET_FAILURES_AFTER_SECONDS)
        everyone_lock = min(
            lockout_seconds(everyone, settings.login_max_failures * EVERYONE_FAILURES_FACTOR, 1.0),
            MAX_EVERYONE_LOCKOUT_SECONDS,
        )
        if lock:
            admin_store.lock_client(session, client, lock)
        if everyone_lock:
            admin_store.lock_client(session, EVERYONE, everyone_lock)
        session.commit()
    return lock, everyone_lock


def _session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def open_session(rt: Runtime, session_id: str) -> None:
    """Remember a new admin session (its hash) for `session_hours`."""
    with rt.db.session() as session:
        admin_store.add_session(session, _session_hash(session_id), rt.settings.session_hours * 3600)
        session.commit()


def session_is_live(rt: Runtime, session_id: str) -> bool:
    """Whether the session was opened and neither logged out, ended by a password change, nor expired."""
    with rt.db.session() as session:
        return admin_store.session_is_live(session, _session_hash(session_id))


def close_session(rt: Runtime, session_id: str) -> None:
    """Log one admin session out, for good: its cookie no longer works even if it was copied."""
    with rt.db.session() as session:
        admin_store.end_sessions(session, _session_hash(session_id))
        session.commit()


def session_secret(rt: Runtime) -> str:
    """`KB_SESSION_SECRET`, else a random secret generated once and kept in the database for all processes."""
    cache = _cache(rt)
    if cache.secret is None:
        configured = rt.settings.session_secret
        if configured is not None:
            cache.secret = configured.get_secret_value()
        else:
            with rt.db.session() as session:
                stored = admin_store.add_setting_if_absent(session, SECRET_KEY, {"value": secrets.token_urlsafe(32)})
                session.commit()
            cache.secret = stored["value"]
    return cache.secret


@dataclass(frozen=True)
class AdminOverview:
    counts: admin_store.OverviewCounts
    database: str
    database_embedded: bool
    chat_model: str
    embed_model: str
    models_file: str | None
    password_from_env: bool


def overview(rt: Runtime) -> AdminOverview:
    """What the dashboard shows: counts, where the data lives, which models are configured."""
    settings = rt.settings
    with rt.db.session() as session:
        counts = admin_store.overview_counts(session)
    embedded = settings.database_url is None
    return AdminOverview(
        counts=counts,
        database=str(settings.pg_dir) if embedded else make_url(rt.db.url).render_as_string(hide_password=True),
        database_embedded=embedded,
        chat_model=settings.chat_model,
        embed_model=settings.embed_model,
        models_file=str(settings.models_file) if settings.models_file else None,
        password_from_env=settings.admin_password is not None,
    )
