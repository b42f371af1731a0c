"""The ``dianfei`` command. Each sub-module registers its commands; heavy libraries (Polars,
SQLAlchemy) are imported inside the command functions so that ``dianfei quote`` starts fast."""

from __future__ import annotations

import importlib

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
                   "collections", "accounts", "audit", "users")


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"dianfei.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"dianfei.cli.{name}":
                raise
            continue  # a command module not written yet
        module.register(app)


_register()


def main() -> None:
    app()
