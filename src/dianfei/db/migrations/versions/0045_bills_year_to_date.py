"""bills.ytd_kwh: the year to date each bill was rated with, kept instead of summed

Annual tiers (阶梯电价, by year) rate a bill on the energy of the account's live bills of the
calendar year before its period. The bill run summed those bills for every account, each run:
eleven months of bills by December, 7.3 s of a million-account run against 1.8 s in February.
Each bill now keeps the figure it was rated with, so the next period's is the previous bill's
``ytd_kwh + kwh`` — read with the previous period's bills, which the run reads anyway for its
opening instants. Whatever changes an earlier bill of the year after a later one was rated
(a cancellation, an imported bill, a bill issued for an earlier period) sets the later bills'
figure to null, and the run sums the year again for those accounts only.

Bills stored before this revision have none (null): the first run after it sums as before. The
column is added without rewriting the table.

Revision ID: 0045
Revises: 0044
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0045"
down_revision = "0044"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a nullable column without a default: ALTER TABLE … ADD COLUMN, no copy of the table
    op.add_column("bills", sa.Column("ytd_kwh", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bills") as batch_op:
        batch_op.drop_column("ytd_kwh")
