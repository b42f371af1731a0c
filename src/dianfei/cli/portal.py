"""CLI: ``portal index-phones`` — the keyed phone look-up the portal's code sign-in needs.

Run it once after upgrading to the schema that added ``customers.phone_lookup`` (customers
stored before it have none), and after ``keys rotate`` + ``keys reencrypt`` (the look-ups then
move to the active key; until then the old key's still match).
"""

from __future__ import annotations

from typing import Annotated

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.cli.context import database

portal_app = typer.Typer(help="The customer portal: the phone look-up for code sign-in.",
                         no_args_is_help=True)


@portal_app.command("index-phones")
@handle_errors
def portal_index_phones(
    missing_only: Annotated[bool, typer.Option(
        "--missing-only", help="only customers without a look-up yet")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Compute customers.phone_lookup from the encrypted phones (batches of 5,000)."""
    from dianfei.customers.service import index_phones
    from dianfei.db.pii import cipher_for

    db = database()
    done = index_phones(db.engine, cipher_for(db), only_missing=missing_only)
    if json_out:
        print_json({"indexed": done})
    else:
        typer.echo(f"{done} customers' phone look-ups written")


def register(app: typer.Typer) -> None:
    app.add_typer(portal_app, name="portal")
