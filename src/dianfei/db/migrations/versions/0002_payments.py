"""payments tables: orders, inbox, payments, allocations

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = dianfei.db.types.UTCDateTime()


def upgrade() -> None:
    op.create_table(
        "payment_orders",
        sa.Column("order_no", sa.String(40), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(12), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("order_no", name=op.f("pk_payment_orders")),
    )
    with op.batch_alter_table("payment_orders") as b:
        b.create_index("ix_payment_orders_account_id", ["account_id"], unique=False)
    op.create_table(
        "payment_inbox",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(12), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("verdict", sa.String(12), nullable=False),
        sa.Column("refusal", sa.String(24), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("transaction_id", sa.String(64), nullable=True),
        sa.Column("payment_id", sa.String(40), nullable=True),
        sa.Column("owner", sa.String(40), nullable=True),
        sa.Column("resolved_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_inbox")),
    )
    with op.batch_alter_table("payment_inbox") as b:
        b.create_index("ix_payment_inbox_verdict", ["verdict", "received_at"], unique=False)
        b.create_index("ix_payment_inbox_channel_txn", ["channel", "transaction_id"], unique=False)
    op.create_table(
        "payments",
        sa.Column("payment_id", sa.String(40), nullable=False),
        sa.Column("channel", sa.String(12), nullable=False),
        sa.Column("transaction_id", sa.String(64), nullable=False),
        sa.Column("order_no", sa.String(40), nullable=True),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.String(32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", _TS, nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("posted_at", _TS, nullable=False),
        sa.Column("source", sa.String(12), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_payments")),
    )
    with op.batch_alter_table("payments") as b:
        b.create_index("uq_payments_channel_txn", ["channel", "transaction_id"], unique=True)
        b.create_index("ix_payments_account", ["account_id", "paid_at"], unique=False)
        b.create_index("ix_payments_business_date", ["channel", "business_date"], unique=False)
    op.create_table(
        "payment_allocations",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("payment_id", sa.String(40), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("allocated_to", sa.String(8), nullable=False),
        sa.Column("bill_id", sa.String(40), nullable=True),
        sa.Column("item_reference", sa.String(64), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("allocated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_allocations")),
    )
    with op.batch_alter_table("payment_allocations") as b:
        b.create_index("ix_payment_allocations_payment", ["payment_id"], unique=False)
        b.create_index("ix_payment_allocations_bill", ["bill_id"], unique=False)
        b.create_index("ix_payment_allocations_account", ["account_id", "allocated_at"],
                       unique=False)
        b.create_index("ix_payment_allocations_item", ["item_reference"], unique=False)
    op.create_table(
        "cashier_shifts",
        sa.Column("shift_id", sa.String(40), nullable=False),
        sa.Column("cashier", sa.String(40), nullable=False),
        sa.Column("opened_at", _TS, nullable=False),
        sa.Column("opening_float", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("closed_at", _TS, nullable=True),
        sa.Column("counted_cash", sa.BigInteger(), nullable=True),
        sa.Column("expected_cash", sa.BigInteger(), nullable=True),
        sa.Column("difference", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("shift_id", name=op.f("pk_cashier_shifts")),
    )
    op.create_table(
        "counter_receipts",
        sa.Column("receipt_no", sa.String(48), nullable=False),
        sa.Column("shift_id", sa.String(40), nullable=False),
        sa.Column("payment_id", sa.String(40), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("tendered", sa.BigInteger(), nullable=True),
        sa.Column("change", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("receipt_no", name=op.f("pk_counter_receipts")),
    )
    with op.batch_alter_table("counter_receipts") as b:
        b.create_index("ix_counter_receipts_shift", ["shift_id"], unique=False)


def downgrade() -> None:
    for table in ("counter_receipts", "cashier_shifts", "payment_allocations", "payments",
                  "payment_inbox", "payment_orders"):
        op.drop_table(table)
