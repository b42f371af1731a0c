"""late_fee_accruals.opened_on: the collections day that opened each accrual

The daily rating carries forward the accounts whose count of late bills did not move. It found
the ones that did by counting every account's late bills of the rating window and comparing the
counts with the stored ratings — a read of the window's accruals that grew with the book and its
history, every day. A count moves only when an accrual is opened (the day a bill first falls
overdue, or an old bill is re-issued) or when the window's edges pass a due date; with the day
each accrual was opened, indexed, the rating reads those few rows instead.

Rows opened before this revision get the last day they accrued (``through``): no later than the
day they were opened, so an accrual opened since the last rating is still found (the next pass
re-rates the accounts with an accrual still open, whose count did not move: it changes nothing).

Revision ID: 0044
Revises: 0043
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0044"
down_revision = "0043"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("late_fee_accruals") as batch_op:
        batch_op.add_column(sa.Column("opened_on", sa.Date(), nullable=True))
    op.execute("UPDATE late_fee_accruals SET opened_on = through")
    op.create_index("ix_late_fee_accruals_opened", "late_fee_accruals", ["opened_on"])


def downgrade() -> None:
    op.drop_index("ix_late_fee_accruals_opened", "late_fee_accruals")
    with op.batch_alter_table("late_fee_accruals") as batch_op:
        batch_op.drop_column("opened_on")
