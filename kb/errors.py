"""One error family: each error carries an HTTP status and a message a user can act on."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class KBError(Exception):
    """Base of every error kb reports to a user."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.headers = headers or {}


class BadRequest(KBError):
    pass


class Unauthorized(KBError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(KBError):
    status_code = 403
    error_type = "permission_error"
    code = "forbidden"


class NotFound(KBError):
    status_code = 404
    error_type = "not_found_error"
    code = "not_found"


def not_found(entity: str, key: object, *, named: bool = False, code: str | None = None) -> NotFound:
    """The one wording for something that does not exist: `There is no dataset with id 3.`"""
    shown = f"'{key}'" if isinstance(key, str) else key
    where = f"named {shown}" if named else f"with id {shown}"
    return NotFound(f"There is no {entity} {where}.", code=code or f"{entity.replace(' ', '_')}_not_found")


def found(value: T | None, entity: str, key: object, *, named: bool = False, code: str | None = None) -> T:
    """`value`, or the NotFound error for it when the lookup came back empty."""
    if value is None:
        raise not_found(entity, key, named=named, code=code)
    return value


class Conflict(KBError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(KBError):
    status_code = 413
    code = "file_too_large"


class UnsupportedMedia(KBError):
    status_code = 415
    code = "unsupported_file_type"


class Unprocessable(KBError):
    """The input is well-formed but its content cannot be used (an encrypted or scanned PDF, an empty file)."""

    status_code = 422
    code = "unprocessable_content"


class RateLimited(KBError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limited"


class ServiceUnavailable(KBError):
    status_code = 503
    error_type = "server_error"
    code = "service_unavailable"


class UpstreamError(KBError):
    """A configured remote model provider failed."""

    status_code = 502
    error_type = "server_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    """A remote model provider did not answer in time (every one tried, when several serve the model)."""

    status_code = 504
    code = "upstream_timeout"


class Cancelled(Exception):
    """Work stopped because its owner asked (a worker shutting down); not a fault of the input, so not a KBError."""
