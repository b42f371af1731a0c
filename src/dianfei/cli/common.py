"""Helpers shared by the CLI modules: JSON output and turning typed errors into exit codes."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from dianfei.audit.actor import acting_as
from dianfei.core.errors import DianfeiError, disk_full

F = TypeVar("F", bound=Callable[..., Any])


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def operator() -> str:
    """The audit chain's actor for a CLI command: ``cli:`` and the operating-system user."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        return "cli:unknown"


def fail(message: str, code: int = 2) -> None:
    sys.stderr.write(f"error: {message}\n")
    raise SystemExit(code)


def handle_errors(fn: F) -> F:
    """Render a DianfeiError as one clear line on stderr and exit 2, never a traceback; a full
    disk as one clear line and exit 3."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # what a command changes is recorded in the audit chain as done by the operator
        with acting_as(operator()):
            try:
                return fn(*args, **kwargs)
            except DianfeiError as exc:
                fail(str(exc))
            except Exception as exc:
                full = disk_full(exc)
                if full is None:
                    raise  # not ours to explain: the traceback says what broke
                # the step's transaction was rolled back by the database: nothing half-stored
                fail(f"{full}: this step stored nothing; free some space and run the command "
                     "again (what was stored before is intact)", code=3)

    return wrapper  # type: ignore[return-value]
