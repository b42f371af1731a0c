"""The ``dianfei`` command. Each sub-module registers its commands; heavy libraries (Polars,
SQLAlchemy) are imported inside the command functions so that ``dianfei quote`` starts fast."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import typer

app = typer.Typer(
    name="dianfei",
    help="dianfei (电费): meter-to-cash for power supply companies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: command modules under dianfei.cli, each with ``register(app)``; a module's own commands only
COMMAND_MODULES = ("tariffs", "billing", "payments", "reconcile", "imports", "vee", "meters", "notify",
                   "collections", "accounts", "database", "reporting", "insight", "risk", "audit",
                   "users", "jobs", "config", "plans", "worklist", "fieldwork", "tasks",
                   "approvals", "portal")


def _modules() -> list[ModuleType]:
    found = []
    for name in COMMAND_MODULES:
        try:
            found.append(importlib.import_module(f"dianfei.cli.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"dianfei.cli.{name}":
                raise
            continue  # a command module not written yet
    return found


for _module in _modules():
    _module.register(app)


def _names(typer_app: typer.Typer) -> set[str]:
    commands = {c.name or (c.callback.__name__.replace("_", "-") if c.callback else "")
                for c in typer_app.registered_commands}
    return commands | {g.name or "" for g in typer_app.registered_groups}


def _app_for(name: str) -> typer.Typer | None:
    """A CLI holding only the module that defines command ``name``: Typer builds every
    command's parameters before it runs one, and building all of them is a tenth of a second
    of each command's start-up."""
    for module in _modules():
        small = typer.Typer(name="dianfei", help=app.info.help, no_args_is_help=True,
                            add_completion=False, pretty_exceptions_enable=False)
        module.register(small)
        if name in _names(small):
            # a callback keeps it a group even with one command ("dianfei import …" stays so)
            small.callback()(_group)
            return small
    return None


def _group() -> None:
    """dianfei (电费): meter-to-cash for power supply companies."""


def main() -> None:
    args = sys.argv[1:]
    small = _app_for(args[0]) if args and not args[0].startswith("-") else None
    (small or app)()
