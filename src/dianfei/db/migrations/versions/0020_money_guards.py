"""guards on every money table: payments and their allocations as on the ledger, no TRUNCATE

The ledger refused UPDATE and DELETE, but ``payments`` and ``payment_allocations`` had no guard,
and a row trigger does not fire on TRUNCATE. Now (see db/guards.py, where the list lives):
- ``payment_allocations`` is append-only (a refund adds the negation, it never edits a row);
- ``payments`` rows are never deleted, and the only change is status posted → refunded/returned
  with every other column as it was;
- on PostgreSQL a statement trigger refuses TRUNCATE on every guarded table.
``ledger check`` verifies that each guard exists and is enabled.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from alembic import op

from dianfei.db.guards import APPEND_ONLY, PAYMENT_COLUMNS, TRUNCATE_GUARDED

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

# append-only tables guarded since earlier revisions
_EARLIER = ("ledger_entries", "vee_edits", "collection_events")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    unchanged = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in PAYMENT_COLUMNS if c != "status")
    if sqlite:
        for table in APPEND_ONLY:
            if table in _EARLIER:
                continue
            for action in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")
        op.execute("CREATE TRIGGER payments_no_delete BEFORE DELETE ON payments "
                   "BEGIN SELECT RAISE(ABORT, 'payments are never deleted'); END")
        op.execute("CREATE TRIGGER payments_only_reversed BEFORE UPDATE ON payments "
                   f"WHEN NOT (OLD.status = 'posted' AND NEW.status IN ('refunded', 'returned') "
                   f"AND {unchanged}) "
                   "BEGIN SELECT RAISE(ABORT, 'a payment only changes from posted to refunded or "
                   "returned'); END")
        return
    for table in APPEND_ONLY:
        if table in _EARLIER:
            continue
        op.execute(f"CREATE FUNCTION {table}_append_only() RETURNS trigger AS $$ "
                   f"BEGIN RAISE EXCEPTION '{table} is append-only'; END $$ LANGUAGE plpgsql")
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()")
    pg_unchanged = " AND ".join(f"NEW.{c} IS NOT DISTINCT FROM OLD.{c}"
                                for c in PAYMENT_COLUMNS if c != "status")
    op.execute(
        "CREATE FUNCTION payments_guard() RETURNS trigger AS $$ BEGIN "
        "IF TG_OP = 'DELETE' THEN RAISE EXCEPTION 'payments are never deleted'; END IF; "
        f"IF NOT (OLD.status = 'posted' AND NEW.status IN ('refunded', 'returned') AND {pg_unchanged}) "
        "THEN RAISE EXCEPTION 'a payment only changes from posted to refunded or returned'; END IF; "
        "RETURN NEW; END $$ LANGUAGE plpgsql")
    op.execute("CREATE TRIGGER payments_guard BEFORE UPDATE OR DELETE ON payments "
               "FOR EACH ROW EXECUTE FUNCTION payments_guard()")
    op.execute("CREATE FUNCTION dianfei_no_truncate() RETURNS trigger AS $$ "
               "BEGIN RAISE EXCEPTION '% may not be truncated', TG_TABLE_NAME; END $$ LANGUAGE plpgsql")
    for table in TRUNCATE_GUARDED:
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION dianfei_no_truncate()")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for name in ("payment_allocations_no_update", "payment_allocations_no_delete",
                     "payments_no_delete", "payments_only_reversed"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        return
    for table in TRUNCATE_GUARDED:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.execute("DROP FUNCTION IF EXISTS dianfei_no_truncate()")
    op.execute("DROP TRIGGER IF EXISTS payments_guard ON payments")
    op.execute("DROP FUNCTION IF EXISTS payments_guard()")
    op.execute("DROP TRIGGER IF EXISTS payment_allocations_append_only ON payment_allocations")
    op.execute("DROP FUNCTION IF EXISTS payment_allocations_append_only()")
