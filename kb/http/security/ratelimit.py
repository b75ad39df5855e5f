"""Token-bucket rate limits per API key and per client address, for chat and login.

The buckets live in this process's memory: with several uvicorn processes each enforces its own
limit (so the effective limit is the setting times the number of processes). That bounds abuse of
one process's CPU, which is what the limit is for; a shared budget would need the database.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, Request

from kb.errors import RateLimited
from kb.http.security.auth import require_principal
from kb.principal import Principal

# Past this many tracked callers, buckets that have refilled completely are forgotten.
MAX_TRACKED = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucket:
    """`per_minute` requests per caller, refilled continuously, with bursts up to `per_minute`."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, caller: str) -> float:
        """Spend one token of `caller`; returns 0 when allowed, else the seconds until a token is back."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(caller)
            if bucket is None:
                if len(self._buckets) >= MAX_TRACKED:
                    self._forget_full(now)
                bucket = self._buckets[caller] = _Bucket(self.capacity, now)
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        refill_seconds = self.capacity / self.rate
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.updated < refill_seconds}


class RateLimits:
    """The buckets of one app: chat per key, chat per address, login per address (0 turns one off)."""

    def __init__(self, chat_per_minute: int, chat_per_ip_per_minute: int, login_per_minute: int) -> None:
        self.chat_per_key = TokenBucket(chat_per_minute) if chat_per_minute else None
        self.chat_per_ip = TokenBucket(chat_per_ip_per_minute) if chat_per_ip_per_minute else None
        self.login_per_ip = TokenBucket(login_per_minute) if login_per_minute else None

    @classmethod
    def from_settings(cls, settings) -> RateLimits:
        return cls(
            settings.rate_limit_chat_per_minute,
            settings.rate_limit_chat_per_ip_per_minute,
            settings.rate_limit_login_per_minute,
        )


def client_address(request: Request) -> str:
    """The caller's address (behind a proxy, run uvicorn with --proxy-headers so this is the real client)."""
    return request.client.host if request.client else "unknown"


def _spend(bucket: TokenBucket | None, caller: str, what: str) -> None:
    if bucket is None:
        return
    wait = bucket.take(caller)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise RateLimited(
            f"Too many {what}; the limit is {int(bucket.capacity)} per minute. Try again in {seconds} seconds.",
            headers={"Retry-After": str(seconds)},
        )


def limit_chat(request: Request, principal: Principal = Depends(require_principal)) -> None:
    """Dependency of chat routes: one token from the caller's key bucket and one from its address's."""
    limits: RateLimits = request.app.state.rate_limits
    caller = f"key:{principal.key_id}" if principal.key_id is not None else principal.kind
    _spend(limits.chat_per_key, caller, "chat requests with this key")
    _spend(limits.chat_per_ip, client_address(request), "chat requests from your address")


def limit_login(request: Request) -> None:
    """Called before a login attempt is checked: bounds password guesses and argon2 work per address."""
    _spend(request.app.state.rate_limits.login_per_ip, client_address(request), "login attempts from your address")
