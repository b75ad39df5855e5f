"""Several OpenAI-compatible providers behind one model name: priority order, failover and a circuit breaker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import httpx

from kb.errors import BadRequest, UpstreamError, UpstreamTimeout
from kb.ml.specs import ModelSpec, ProviderSpec

T = TypeVar("T")
RETRYABLE_STATUS = {408, 409, 429}


class ProviderFailed(Exception):
    """This provider failed in a way another provider may not (down, overloaded, nonsense): try the next."""


@dataclass
class _Health:
    failures: int = 0
    cooling_until: float = 0.0
    last_error: str = ""


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = body.get("error", {}).get("message") if isinstance(body.get("error"), dict) else body.get("error")
        if message:
            return str(message)[:300]
    except ValueError:
        pass
    return response.text[:300] or response.reason_phrase


def check_response(provider: ProviderSpec, response: httpx.Response) -> None:
    """Raise ProviderFailed for statuses worth failing over, BadRequest/UpstreamError for the rest."""
    status = response.status_code
    if status < 400:
        return
    response.read()  # a streamed response's error body is not read yet
    if status >= 500 or status in RETRYABLE_STATUS:
        raise ProviderFailed(f"HTTP {status}: {_error_text(response)}")
    if status in (400, 413, 422):
        raise BadRequest(f"{provider.label} rejected the request (HTTP {status}): {_error_text(response)}")
    raise UpstreamError(
        f"{provider.label} answered HTTP {status}: {_error_text(response)} (check its base_url, model and api_key)"
    )


def parse_json(response: httpx.Response) -> dict:
    """The response body as a JSON object, or ProviderFailed."""
    try:
        body = response.json()
    except ValueError as exc:
        raise ProviderFailed(f"answered something that is not JSON: {response.text[:120]!r}") from exc
    if not isinstance(body, dict):
        raise ProviderFailed("answered JSON that is not an object")
    return body


def sse_payloads(lines: Iterator[str]) -> Iterator[dict | None]:
    """JSON objects from an SSE stream's `data:` lines; None for the closing `[DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue  # comments, event names and keep-alive blank lines
        data = line[5:].strip()
        if data == "[DONE]":
            yield None
            return
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise ProviderFailed(f"sent a stream event that is not JSON: {data[:120]!r}") from exc
        if not isinstance(payload, dict):
            raise ProviderFailed("sent a stream event that is not a JSON object")
        if "error" in payload:
            raise ProviderFailed(f"reported an error mid-stream: {payload['error']}")
        yield payload


class ProviderPool:
    """Tries a model's providers by priority, skipping for a cool-down those that failed too often in a row."""

    def __init__(self, spec: ModelSpec, clock: Callable[[], float] = time.monotonic):
        self.spec = spec
        self.providers = spec.sorted_providers()
        self.clock = clock
        self.client = httpx.Client(timeout=httpx.Timeout(spec.timeout_seconds, connect=min(5.0, spec.timeout_seconds)))
        self._health = {id(p): _Health() for p in self.providers}
        self._lock = threading.Lock()

    def headers(self, provider: ProviderSpec) -> dict[str, str]:
        """Auth header for this provider, when it has a key."""
        key = provider.api_key.get_secret_value() if provider.api_key else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    def url(self, provider: ProviderSpec, endpoint: str) -> str:
        return f"{provider.base_url.rstrip('/')}/{endpoint}"

    def upstream_model(self, provider: ProviderSpec) -> str:
        return provider.model or self.spec.name

    def attempt_order(self) -> tuple[list[ProviderSpec], list[str]]:
        """Providers to try now, and notes on those skipped; when all are cooling down, all are tried."""
        now = self.clock()
        with self._lock:
            ready = [p for p in self.providers if self._health[id(p)].cooling_until <= now]
            notes = [
                f"{p.label}: skipped, cooling down after {self._health[id(p)].failures} failures "
                f"(last: {self._health[id(p)].last_error})"
                for p in self.providers
                if p not in ready
            ]
        return (ready, notes) if ready else (list(self.providers), [])

    def record_success(self, provider: ProviderSpec) -> None:
        with self._lock:
            self._health[id(provider)] = _Health()

    def record_failure(self, provider: ProviderSpec, reason: str) -> None:
        with self._lock:
            health = self._health[id(provider)]
            health.failures += 1
            health.last_error = reason
            if health.failures >= self.spec.failure_threshold:
                health.cooling_until = self.clock() + self.spec.cooldown_seconds

    def run(self, attempt: Callable[[ProviderSpec], T]) -> T:
        """Call `attempt` on each provider in turn until one succeeds; UpstreamError naming them all otherwise."""
        providers, notes = self.attempt_order()
        timeouts = 0
        for provider in providers:
            try:
                result = attempt(provider)
            except (httpx.TransportError, ProviderFailed) as exc:
                reason = describe_failure(exc)
                self.record_failure(provider, reason)
                notes.append(f"{provider.label}: {reason}")
                timeouts += isinstance(exc, httpx.TimeoutException)
                continue
            self.record_success(provider)
            return result
        error = UpstreamTimeout if providers and timeouts == len(providers) else UpstreamError
        raise error(f"every provider of model '{self.spec.name}' failed: " + "; ".join(notes))


def describe_failure(exc: Exception) -> str:
    """Short words for what went wrong talking to a provider."""
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    return str(exc) or type(exc).__name__
