"""Rule files read once per process — and read again when the configuration changes.

Tariff power-factor tables, plan policy, notice templates, the bill's words and policies and
the time-of-use calendars are files; parsing them on every bill or notice would cost more than
the work itself, so each loader keeps what it read (:func:`rule_cache`). A long-running process
must still see an edit: the job worker snapshots the configuration before each pass
(``audit.config``) and, when a file changed, records the change on the audit chain and then
calls :func:`reload_rules`, so the pass runs on the new rules. A server process (``dianfei
serve``) reads them at start; restart it after an edit (``systemctl restart dianfei-web``) —
docs/operations.md says so.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_CACHES: list[Any] = []
_LOCK = threading.Lock()


def rule_cache(maxsize: int = 8) -> Callable[[F], F]:
    """``functools.lru_cache`` for a rule-file loader, registered so :func:`reload_rules` can
    empty it."""
    def wrap(fn: F) -> F:
        cached = functools.lru_cache(maxsize=maxsize)(fn)
        with _LOCK:
            _CACHES.append(cached)
        return cached  # type: ignore[return-value]

    return wrap


def reload_rules() -> int:
    """Forget every rule file read so far (the next use reads it again); the number of loaders."""
    with _LOCK:
        caches = list(_CACHES)
    for c in caches:
        c.cache_clear()
    return len(caches)
