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


def disk_full(exc: BaseException) -> str | None:
    """The words for a full disk, if ``exc`` (or what caused it) is one: SQLite's "database or
    disk is full", PostgreSQL's "No space left on device" (SQLSTATE 53100), an ``OSError``
    ENOSPC/EDQUOT from a file write (interval store, documents, backups). None otherwise."""
    import errno

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" writing {current.filename}" if current.filename else ""
            return f"the disk is full{where}"
        text = str(current).lower()
        if ("database or disk is full" in text or "no space left on device" in text
                or getattr(current, "sqlstate", None) == "53100"):
            return "the database's disk is full"
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return None
