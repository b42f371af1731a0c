"""open_items keep their bill's period: open_items.period and ix_open_items_period

``dianfei kpi`` reads the bill items of the DSO window's periods (each bill's kept clearing
state, migration 0037). It reached them by the primary key (``reference``, the bill id: the
customer, then the period), so a period's items lay on nearly every page of that index and the
cost grew with the history (PostgreSQL, 24 months against 3: docs/benchmarks.md). A bill
item now keeps its bill's period (written with the row by ``ledger.items``; a bill's period
never changes) and ``(period, reference)`` is indexed with the kept state, so one period's
items and what the KPIs read of them lie together, read without the table.
Existing bill items are filled here from their bills; ``ledger check`` proves the period
equals the bill's.

Revision ID: 0041
Revises: 0040
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0041"
down_revision = "0040"
branch_labels = None
depends_on = None

#: each stored bill's period onto its bill item (the same rule as ``ledger.items``; copied so
#: that this revision does not change with the code)
_FILL = (
    "UPDATE open_items SET period = b.period FROM bills b "
    "WHERE open_items.item_kind = 'bill' AND b.bill_id = open_items.reference")


def upgrade() -> None:
    # plain ADD COLUMN (no table copy on SQLite)
    op.add_column("open_items", sa.Column("period", sa.String(length=7), nullable=True))
    op.execute(_FILL)
    # a period's bill items with their kept clearing state (migration 0037), covering what the
    # KPIs' period sums read (key columns: SQLite has no INCLUDE)
    op.create_index("ix_open_items_period", "open_items",
                    ["period", "reference", "item_kind", "amount", "cleared", "last_cleared_at",
                     "paid_in_full_at"])


def downgrade() -> None:
    op.drop_index("ix_open_items_period", table_name="open_items")
    with op.batch_alter_table("open_items") as batch:
        batch.drop_column("period")
