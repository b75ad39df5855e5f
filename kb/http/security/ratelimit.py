"""Rate limits per API key and per client address, for chat and login: token buckets kept in the database.

Every process serving the same database takes from the same buckets (one upsert per check, see
`kb.db.store.rate_limits`), so N `kb serve` replicas together allow what one would, not N times as
much. The search gate (`KB_SEARCH_CONCURRENCY`) stays per process on purpose: it shares out this
process's cores, and a shared gate would add a database round trip to every search for no gain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fastapi import Depends, Request

from kb.db.store.rate_limits import take_token
from kb.errors import RateLimited
from kb.http.security.auth import require_principal
from kb.principal import Principal


@dataclass(frozen=True)
class Limit:
    """`per_minute` requests per caller, refilled continuously, with bursts up to `per_minute`."""

    name: str  # the buckets' key prefix
    per_minute: int


# /learn trains a model for anyone, logged in or not.
LEARN = Limit("learn-ip", 30)


@dataclass(frozen=True)
class RateLimits:
    """The limits of one app: chat per key, chat per address, login per address (None turns one off)."""

    chat_per_key: Limit | None
    chat_per_ip: Limit | None
    login_per_ip: Limit | None

    @classmethod
    def from_settings(cls, settings) -> RateLimits:
        def limit(name: str, per_minute: int) -> Limit | None:
            return Limit(name, per_minute) if per_minute else None

        return cls(
            limit("chat-key", settings.rate_limit_chat_per_minute),
            limit("chat-ip", settings.rate_limit_chat_per_ip_per_minute),
            limit("login-ip", settings.rate_limit_login_per_minute),
        )


def client_address(request: Request) -> str:
    """The caller's address (behind a proxy, run uvicorn with --proxy-headers so this is the real client)."""
    return request.client.host if request.client else "unknown"


def spend(request: Request, limit: Limit | None, caller: str, what: str) -> None:
    """Take one token from `caller`'s bucket of `limit`, or refuse with 429 and when to try again."""
    if limit is None:
        return
    wait = take_token(request.app.state.db, f"{limit.name}:{caller}"[:200], limit.per_minute, limit.per_minute / 60)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise RateLimited(
            f"Too many {what}; the limit is {limit.per_minute} per minute. Try again in {seconds} seconds.",
            headers={"Retry-After": str(seconds)},
        )


def limit_chat(request: Request, principal: Principal = Depends(require_principal)) -> None:
    """Dependency of chat routes: one token from the caller's key bucket and one from its address's."""
    limits: RateLimits = request.app.state.rate_limits
    caller = f"key:{principal.key_id}" if principal.key_id is not None else principal.kind
    spend(request, limits.chat_per_key, caller, "chat requests with this key")
    spend(request, limits.chat_per_ip, client_address(request), "chat requests from your address")


def limit_learn(request: Request) -> None:
    """Called before /learn trains anything: bounds the CPU one address can ask of a page that needs no login."""
    spend(request, LEARN, client_address(request), "training runs from your address")


def limit_login(request: Request) -> None:
    """Called before a login attempt is checked: bounds password guesses and argon2 work per address."""
    limits: RateLimits = request.app.state.rate_limits
    spend(request, limits.login_per_ip, client_address(request), "login attempts from your address")
