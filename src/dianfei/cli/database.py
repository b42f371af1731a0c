"""CLI: ``dianfei migrate`` — the schema changes, run by the database owner (db/roles.py)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from dianfei.cli.common import handle_errors, print_json


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate_command)


@handle_errors
def migrate_command(
    runtime_role: Annotated[str | None, typer.Option(
        help="PostgreSQL role the services run as: granted what they need and nothing more "
             "(no TRUNCATE, no DDL); the role must exist")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Bring the schema to the newest revision as the owner (DIANFEI_MIGRATE_DATABASE_URL, else
    DIANFEI_DATABASE_URL); with --runtime-role, grant the runtime role its rights afresh (run it
    after every upgrade: new tables need their grants)."""
    from dianfei.core.settings import load_settings
    from dianfei.db.engine import make_engine, migrate, schema_revisions
    from dianfei.db.guards import missing_guards
    from dianfei.db.roles import grant_runtime

    settings = load_settings()
    engine = make_engine(os.environ.get("DIANFEI_MIGRATE_DATABASE_URL") or settings.database_url)
    try:
        before, head = schema_revisions(engine)
        migrate(engine)
        granted: dict[str, str] = {}
        with engine.begin() as conn:
            if runtime_role:
                granted = grant_runtime(conn, runtime_role)
            missing = missing_guards(conn)
    finally:
        engine.dispose()
    out = {"from_revision": before, "revision": head, "runtime_role": runtime_role,
           "tables_granted": len(granted), "missing_guards": missing}
    if json_out:
        print_json(out)
    else:
        typer.echo(f"schema at {head} (was {before or 'empty'})"
                   + (f"; {runtime_role} granted on {len(granted)} tables" if runtime_role else ""))
    if missing:
        raise typer.Exit(1)
