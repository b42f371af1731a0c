"""supply_interruptions: the spans in which an account's supply was off (停电 … 复电)

Collections' stop cases cut an account's supply (for arrears, or by smart prepayment) and
restore it; what a meter registers depends on that, and the readers of consumption — the theft
warnings, which must not take a month without power for a fall in use — sit below collections.
So the span is kept where the account is (customers), one row per stop case that was carried
out: ``off_at`` when the supply was cut, ``on_at`` when it was restored (null while it is off),
written by the stop case in the transaction that records the switch.

The spans of the stop cases carried out before this revision are copied from ``stop_cases``.

Revision ID: 0046
Revises: 0045
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0046"
down_revision = "0045"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "supply_interruptions",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=12), nullable=False),
        sa.Column("off_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("on_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.account_id"],
                                name=op.f("fk_supply_interruptions_account_id_accounts")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_supply_interruptions")),
    )
    op.create_index("ix_supply_interruptions_account", "supply_interruptions",
                    ["account_id", "off_at"])
    # the stop cases carried out so far (a case reconnected has both ends)
    op.execute(
        "INSERT INTO supply_interruptions (key, account_id, reason, off_at, on_at) "
        "SELECT 'stop_case:' || CAST(case_id AS VARCHAR(20)), account_id, "
        "CASE WHEN mode = 'prepaid' THEN 'prepayment' ELSE 'arrears' END, suspended_at, "
        "reconnected_at FROM stop_cases WHERE suspended_at IS NOT NULL")


def downgrade() -> None:
    op.drop_index("ix_supply_interruptions_account", table_name="supply_interruptions")
    op.drop_table("supply_interruptions")
