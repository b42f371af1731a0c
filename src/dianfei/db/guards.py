"""The database's own guards on money and evidence tables, and the check that they are in force.

Application code never edits the book of record; the database refuses it too, so a bug, a
hand-typed statement or the application's own credentials cannot rewrite history:

- append-only (no UPDATE, no DELETE): the ledger, payment allocations (clearings), VEE edits,
  collection events;
- ``payments``: never deleted; the one change is status posted → refunded/returned;
- on PostgreSQL, no TRUNCATE on any of them (a row trigger does not fire on TRUNCATE).

On PostgreSQL the guards are triggers the application's runtime role cannot disable: it does not
own the tables (``dianfei migrate --runtime-role``, docs/operations.md). :func:`missing_guards`
is what ``ledger check`` reports.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

APPEND_ONLY = ("ledger_entries", "payment_allocations", "vee_edits", "collection_events")
#: every column of ``payments`` (the guard compares them all but status)
PAYMENT_COLUMNS = ("payment_id", "channel", "transaction_id", "order_no", "account_id", "customer_id",
                   "amount", "paid_at", "business_date", "posted_at", "source", "status")
TRUNCATE_GUARDED = (*APPEND_ONLY, "payments")

#: (table, trigger names any one of which is the guard) per dialect
_SQLITE = {
    **{t: ((f"{t}_no_update",), (f"{t}_no_delete",)) for t in APPEND_ONLY},
    "payments": (("payments_no_delete",), ("payments_only_reversed",)),
}
_PG = {
    **{t: ((f"{t}_append_only",), (f"{t}_no_truncate",)) for t in APPEND_ONLY},
    "payments": (("payments_guard",), ("payments_no_truncate",)),
}


def missing_guards(conn: Connection) -> list[str]:
    """Each guard that is absent or disabled, as "table: trigger (why)"; empty when all hold."""
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).all()
        state = {str(r[0]): "O" for r in rows}
    else:
        rows = conn.execute(text(
            "SELECT tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal")).all()
        state = {str(r[0]): str(r[1]) for r in rows}
    wanted = _SQLITE if sqlite else _PG
    problems = []
    for table, groups in wanted.items():
        for names in groups:
            found = [state[n] for n in names if n in state]
            if not found:
                problems.append(f"{table}: {names[0]} (missing)")
            elif "D" in found:  # PostgreSQL: O/A enabled, R replica only, D disabled
                problems.append(f"{table}: {names[0]} (disabled)")
    return problems
