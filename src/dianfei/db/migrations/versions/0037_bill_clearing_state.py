"""open_items keep each bill's clearing state: cleared, last_cleared_at, paid_in_full_at

A bill's paid amount and the instant it was paid in full are kept on its open item in the
transaction that writes its clearings (``ledger.items.write``), so ``dianfei kpi`` reads one row
per bill instead of folding every clearing (the clearings are only read for the bills cleared
after the as-of date). Existing items are filled here from their clearings; ``ledger check``
proves the kept state equals what the clearings derive.

Revision ID: 0037
Revises: 0036
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None

#: each bill item's state from its clearings (the same derivation as ``ledger.items``; copied
#: so that this revision does not change with the code)
_FILL = (
    "UPDATE open_items SET cleared = s.cleared, last_cleared_at = s.last_at, "
    "paid_in_full_at = s.full_at FROM (SELECT bill_id, CAST(SUM(amount) AS BIGINT) AS cleared, "
    "MAX(at) AS last_at, MAX(CASE WHEN cum >= due AND cum - amount < due THEN at END) AS full_at "
    "FROM (SELECT pa.bill_id AS bill_id, pa.amount AS amount, pa.allocated_at AS at, "
    "o.amount AS due, SUM(pa.amount) OVER (PARTITION BY pa.bill_id ORDER BY pa.allocated_at, "
    "pa.id ROWS UNBOUNDED PRECEDING) AS cum FROM payment_allocations pa JOIN open_items o "
    "ON o.reference = pa.bill_id AND o.item_kind = 'bill' WHERE pa.allocated_to = 'bill') w "
    "GROUP BY bill_id) s WHERE open_items.reference = s.bill_id")


def upgrade() -> None:
    # plain ADD COLUMN (no table copy on SQLite: the money table's guards stay as they are)
    op.add_column("open_items", sa.Column("cleared", sa.BigInteger(), nullable=False,
                                          server_default="0"))
    op.add_column("open_items", sa.Column("last_cleared_at", sa.DateTime(), nullable=True))
    op.add_column("open_items", sa.Column("paid_in_full_at", sa.DateTime(), nullable=True))
    op.execute(_FILL)


def downgrade() -> None:
    with op.batch_alter_table("open_items") as batch:
        batch.drop_column("paid_in_full_at")
        batch.drop_column("last_cleared_at")
        batch.drop_column("cleared")
