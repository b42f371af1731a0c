"""Who is acting: a context variable the entry points set (a web request's user, the CLI's
operator) and the chain writer reads, so domain code never passes it along. No heavy imports:
the CLI sets it for every command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_ACTOR: ContextVar[str] = ContextVar("audit_actor", default="system")


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Attribute the records appended inside the block to ``actor`` (``user:NAME``,
    ``cli:NAME``)."""
    token = _ACTOR.set(actor)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def current_actor() -> str:
    return _ACTOR.get()
