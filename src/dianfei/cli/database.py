"""CLI: ``dianfei migrate`` — the schema changes, run by the database owner (db/roles.py);
``dianfei backup`` / ``dianfei restore`` (db/backup.py); ``dianfei keys …``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from dianfei.cli.common import handle_errors, print_json

if TYPE_CHECKING:
    from dianfei.db.engine import Database


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate_command)
    app.command("backup")(backup_command)
    app.command("restore")(restore_command)
    app.add_typer(keys_app, name="keys")


@handle_errors
def migrate_command(
    runtime_role: Annotated[str | None, typer.Option(
        help="PostgreSQL role the services run as: granted what they need and nothing more "
             "(no TRUNCATE, no DDL); the role must exist")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list the migrations that would "
                                          "run, change nothing")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Bring the schema to the newest revision as the owner (DIANFEI_MIGRATE_DATABASE_URL, else
    DIANFEI_DATABASE_URL); with --runtime-role, grant the runtime role its rights afresh (run it
    after every upgrade: new tables need their grants)."""
    from dianfei.core.settings import load_settings
    from dianfei.db.engine import make_engine, migrate, pending_migrations, schema_revisions
    from dianfei.db.guards import missing_guards
    from dianfei.db.roles import grant_runtime

    settings = load_settings()
    engine = make_engine(os.environ.get("DIANFEI_MIGRATE_DATABASE_URL") or settings.database_url)
    if dry_run:
        try:
            before, head = schema_revisions(engine)
            steps = pending_migrations(before)
        finally:
            engine.dispose()
        plan = {"from_revision": before, "revision": head, "dry_run": True,
                "migrations": [{"revision": r, "title": t} for r, t in steps]}
        if json_out:
            print_json(plan)
        else:
            typer.echo(f"schema at {before or 'empty'}; newest {head}; "
                       + (f"{len(steps)} migration(s) would run:" if steps else "nothing to do"))
            for r, t in steps:
                typer.echo(f"  {r}  {t}")
        return
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


@handle_errors
def backup_command(
    out: Annotated[str, typer.Option("--out", help="the backup file to write (.tar.gz); never "
                                     "overwritten")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A consistent backup of the database (SQLite online backup or pg_dump) with the interval
    store and documents, while the system runs. The keyring is left out: keep it apart."""
    from pathlib import Path

    from dianfei.core.settings import load_settings
    from dianfei.db.backup import backup

    manifest = backup(load_settings(), Path(out))
    summary = {"out": out, "backend": manifest["backend"],
               "schema_revision": manifest["schema_revision"],
               "audit_head": manifest["audit_head"], "members": len(manifest["members"]),
               "bytes": sum(m["bytes"] for m in manifest["members"])}
    if json_out:
        print_json(summary)
    else:
        typer.echo(f"backup written to {out}: {summary['backend']} database at "
                   f"{summary['schema_revision']} and {summary['members'] - 1} data files "
                   f"({summary['bytes']:,} bytes before compression); the keyring is not in it")


@handle_errors
def restore_command(
    archive: Annotated[str, typer.Argument(help="a file written by `dianfei backup`")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Restore a backup into the configured database and data directory, both empty. Every
    member is checked against the manifest before anything is written."""
    from pathlib import Path

    from dianfei.core.settings import load_settings
    from dianfei.db.backup import restore

    out = restore(load_settings(), Path(archive))
    if json_out:
        print_json(out)
    else:
        typer.echo(f"restored {archive} ({out['backend']}, schema {out['schema_revision']}, "
                   f"{out['files']} data files)"
                   + ("; run `dianfei migrate` to bring it to this version" if out["migrate_needed"]
                      else "") + "; check it with `dianfei audit verify`")


keys_app = typer.Typer(help="Keys of personal data (个人信息密钥): list, rotate, re-encrypt.",
                       no_args_is_help=True)


@keys_app.command("list")
@handle_errors
def keys_list(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The keyring's key ids, the active one, and how many stored values each key sealed."""
    from dianfei.cli.context import database
    from dianfei.db.pii import cipher_for, key_usage

    db = database()
    cipher = cipher_for(db)
    usage = key_usage(db.engine)
    rows = [{"key_id": kid, "active": kid == cipher.active, "in_keyring": kid in cipher.key_ids,
             "values": usage.get(kid, {})} for kid in sorted(set(cipher.key_ids) | set(usage))]
    if json_out:
        print_json(rows)
        return
    for r in rows:
        total = sum(r["values"].values())  # type: ignore[attr-defined]
        flag = " (active)" if r["active"] else "" if r["in_keyring"] else " (MISSING from the keyring)"
        typer.echo(f"{r['key_id']}{flag}: {total} values")


@keys_app.command("rotate")
@handle_errors
def keys_rotate(
    batch: Annotated[int, typer.Option(help="values per transaction")] = 5_000,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A new key becomes the active one and every stored value is re-encrypted with it (in
    batches; re-run after an interruption). The old key files stay: remove one only when `keys
    list` shows it seals nothing. Keys from DIANFEI_SECRET_KEYS are rotated by adding the new key
    there, pointing DIANFEI_SECRET_KEY_ID at it and running `keys reencrypt`."""
    import os as _os

    from dianfei.cli.context import database
    from dianfei.core.crypto import write_key_file
    from dianfei.core.errors import ValidationError
    from dianfei.db.pii import cipher_for

    if _os.environ.get("DIANFEI_SECRET_KEYS") or _os.environ.get("DIANFEI_SECRET_KEY"):
        raise ValidationError("the keys come from the environment: add the new key to "
                              "DIANFEI_SECRET_KEYS, set DIANFEI_SECRET_KEY_ID to it and run "
                              "`dianfei keys reencrypt`")
    db = database()
    old = cipher_for(db)
    folder = db.settings.data_dir / "keys"
    folder.mkdir(parents=True, exist_ok=True)
    numbers = [int(k[1:]) for k in old.key_ids if k[1:].isdigit() and k.startswith("k")]
    new_id = f"k{max(numbers, default=0) + 1}"
    write_key_file(folder, new_id, _os.urandom(32))
    (folder / "active").write_text(new_id + "\n")
    done = _reencrypt(db, batch)
    out = {"previous_key_id": old.active, "key_id": new_id, "reencrypted": done}
    if json_out:
        print_json(out)
    else:
        typer.echo(f"active key {new_id} (was {old.active}); {done} values re-encrypted")


@keys_app.command("reencrypt")
@handle_errors
def keys_reencrypt(
    batch: Annotated[int, typer.Option(help="values per transaction")] = 5_000,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Re-encrypt every stored value not sealed by the active key (older keys, v1 tokens)."""
    from dianfei.cli.context import database

    done = _reencrypt(database(), batch)
    if json_out:
        print_json({"reencrypted": done})
    else:
        typer.echo(f"{done} values re-encrypted")


def _reencrypt(db: Database, batch: int) -> int:
    import sys

    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    from dianfei.core.errors import ValidationError
    from dianfei.db.pii import cipher_for, reencrypt

    if batch < 1:
        raise ValidationError("--batch must be at least 1")
    cipher = cipher_for(db)
    with Progress(TextColumn("re-encrypting {task.completed} values"), TimeElapsedColumn(),
                  transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("keys", total=None)
        return reencrypt(db.engine, cipher, batch=batch,
                         progress=lambda n: bar.update(task, completed=n))
