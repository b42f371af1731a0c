"""The ``dianfei`` command. Each sub-module registers its commands; heavy libraries (Polars,
SQLAlchemy) are imported inside the command functions so that ``dianfei quote`` starts fast."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="dianfei",
    help="dianfei (电费): meter-to-cash for power supply companies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from dianfei.cli import tariffs

    tariffs.register(app)
    try:
        from dianfei.cli import billing
    except ImportError:  # pragma: no cover - during bootstrap only
        return
    billing.register(app)


_register()


def main() -> None:
    app()
