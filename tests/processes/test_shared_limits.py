"""Issue 19, part 4: limits that hold across replicas. Two real `kb serve --no-worker` processes on two
loopback ports share one test database; what one process lets through counts against the other."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT
from tests.processes.servers import kb_servers

pytestmark = pytest.mark.slow

CHAT = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}


def _login_attempt(client: httpx.Client) -> int:
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text) or re.search(
        r'<meta name="csrf-token" content="([^"]+)">', page.text
    )
    assert token, page.text[:500]
    return client.post("/admin/login", data={"password": "wrong password", "csrf_token": token.group(1)}).status_code


def test_rate_limits_hold_across_two_server_processes(tmp_path: Path, database_url: str):
    limits = {
        "rate_limit_chat_per_minute": "3",
        "rate_limit_chat_per_ip_per_minute": "0",
        "rate_limit_login_per_minute": "4",
        "login_max_failures": "100",  # the lockout must not be what refuses here
    }
    with kb_servers(2, tmp_path, database_url, **limits) as servers:
        clients = [httpx.Client(base_url=server.url, timeout=30) for server in servers]
        try:
            chats = [clients[n % 2].post("/v1/chat/completions", json=CHAT, headers=ROOT).status_code for n in range(8)]
            logins = [_login_attempt(clients[n % 2]) for n in range(8)]
        finally:
            for client in clients:
                client.close()
    # A request the limit lets through reaches the model lookup (400: no such model) or the password check (401).
    assert sum(code != 429 for code in chats) == 3, chats
    assert set(chats) == {400, 429}, chats
    assert sum(code != 429 for code in logins) == 4, logins
    assert set(logins) == {401, 429}, logins
