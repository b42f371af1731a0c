"""Least privilege on PostgreSQL: the owner migrates, the application runs as a runtime role.

Before this, migrations ran at every start with the runtime URL, so the application's role owned
every table and could disable or drop the append-only triggers, TRUNCATE the ledger or drop it.
Now (docs/operations.md, "Database roles"):

- the **owner** (``DIANFEI_MIGRATE_DATABASE_URL``, else ``DIANFEI_DATABASE_URL``) runs
  ``dianfei migrate``: the schema changes, and with ``--runtime-role ROLE`` the grants below;
- the **runtime role** (the ``DIANFEI_DATABASE_URL`` the services run with) gets SELECT and
  INSERT on the append-only tables, SELECT, INSERT and UPDATE on ``payments`` (whose trigger
  allows only posted → refunded/returned), SELECT, INSERT, UPDATE and DELETE on working tables,
  SELECT on ``alembic_version``, and the sequences — never TRUNCATE, never ownership, so it can
  neither alter a table, nor disable a trigger, nor drop anything.

A service started as the runtime role on a schema that is not at the newest revision refuses to
start with a message naming ``dianfei migrate`` (it cannot migrate, and must not run on an older
schema). SQLite has no roles: the file's permissions are the boundary there.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, text

from dianfei.core.errors import ValidationError
from dianfei.db.guards import APPEND_ONLY

_ROLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: tables whose rows the runtime role may insert and read, nothing more
READ_INSERT = frozenset(APPEND_ONLY)
#: tables it may also update (a trigger says which update)
READ_INSERT_UPDATE = frozenset({"payments"})
READ_ONLY = frozenset({"alembic_version"})


def grant_runtime(conn: Connection, role: str) -> dict[str, str]:
    """Grant ``role`` what the services need on every table of the current schema, and revoke
    the rest; returns table → privileges granted. PostgreSQL only; ``role`` must exist."""
    if conn.dialect.name != "postgresql":
        raise ValidationError("database roles exist on PostgreSQL only (SQLite: protect the file)")
    if not _ROLE.fullmatch(role):
        raise ValidationError(f"runtime role must be a lower-case SQL identifier, got {role!r}")
    exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
    if exists is None:
        raise ValidationError(f"role {role} does not exist: CREATE ROLE {role} LOGIN PASSWORD '…' "
                              "first (as a superuser or a role with CREATEROLE)")
    owner = conn.execute(text("SELECT current_user")).scalar_one()
    if owner == role:
        raise ValidationError(f"the runtime role {role} is the owner that migrates: use another role")
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    tables = [str(r[0]) for r in conn.execute(text(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"))]
    conn.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}'))
    granted = {}
    for table in tables:
        if table in READ_ONLY:
            privileges = "SELECT"
        elif table in READ_INSERT:
            privileges = "SELECT, INSERT"
        elif table in READ_INSERT_UPDATE:
            privileges = "SELECT, INSERT, UPDATE"
        else:
            privileges = "SELECT, INSERT, UPDATE, DELETE"
        conn.execute(text(f'REVOKE ALL ON "{table}" FROM {role}'))
        conn.execute(text(f'GRANT {privileges} ON "{table}" TO {role}'))
        granted[table] = privileges
    conn.execute(text(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO {role}'))
    return granted
