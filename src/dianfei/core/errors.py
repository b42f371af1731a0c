"""Typed errors with stable codes. A business conflict is a 4xx, never a 500.

Retryable failures (a timeout, a lock) and terminal ones (bad data) are different types so a
caller can decide whether to try again without parsing messages.
"""

from __future__ import annotations


class DianfeiError(Exception):
    """Base of every error dianfei raises on purpose."""

    code = "error"
    http_status = 500
    retryable = False

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class ValidationError(DianfeiError):
    """Input (a file, a flag, a request) is wrong; the message says what and where."""

    code = "invalid"
    http_status = 422


class NotFoundError(DianfeiError):
    code = "not_found"
    http_status = 404


class ConflictError(DianfeiError):
    """The request contradicts stored state (e.g. cancelling a bill that is already cancelled)."""

    code = "conflict"
    http_status = 409


class TariffError(ValidationError):
    """A tariff file or tariff request is invalid."""

    code = "tariff_invalid"


class RetryableError(DianfeiError):
    """Something transient failed; the same call may succeed later."""

    code = "retryable"
    http_status = 503
    retryable = True
