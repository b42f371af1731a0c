"""Room on each page for the rows the collections day rewrites in place (PostgreSQL)

Every collections day updates each open late-fee accrual (``through``, ``raw``, ``accrued``:
100,000 rows a day at a million accounts with a tenth in arrears) and the ratings whose facts
moved. None of those columns is indexed, so PostgreSQL can write each new row version on the
same page and touch no index (a heap-only tuple, HOT) — but only when the page has room, and at
the default fill factor (100) every page is full: each update went to another page and into all
five of the accruals' indexes, and the table doubled in size between two autovacuums. Measured
on 100,000 accruals, the day's update (a COPY into a temporary table and one UPDATE … FROM): 1.6–2.5 s
a day growing with the bloat at fill factor 100, 0.63–0.9 s at 70 with the table's size steady.

The setting applies to pages written from now on; existing pages fill the same way as rows move.
SQLite has no such setting (it rewrites a row in place in its B-tree).

Revision ID: 0047
Revises: 0046
"""

from __future__ import annotations

from alembic import op

revision = "0047"
down_revision = "0046"
branch_labels = None
depends_on = None

#: table → fill factor (per cent of a page that inserts fill)
FILL = {"late_fee_accruals": 70, "credit_ratings": 80}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, percent in FILL.items():
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {percent})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in FILL:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
