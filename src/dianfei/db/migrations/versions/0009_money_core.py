"""money core: open items kept with the ledger, the event outbox and its deliveries

Open items are filled from what the ledger and the clearings already say, so an existing
database keeps every figure.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = dianfei.db.types.UTCDateTime()

# debits with what reversals and clearings leave of them; credit per payment
_FILL = """
INSERT INTO open_items (reference, account_id, customer_id, item_kind, bill_id, due_on, amount,
                        open_amount, updated_at)
SELECT e.reference, e.account_id, e.customer_id, e.kind,
       CASE WHEN e.kind = 'late_fee' THEN a.bill_id ELSE e.reference END,
       e.due_on, e.amount, e.amount + COALESCE(r.amount, 0) - COALESCE(a.allocated, 0),
       e.posted_at
FROM ledger_entries e
LEFT JOIN ledger_entries r ON r.reverses_entry_id = e.entry_id
LEFT JOIN (SELECT item_reference, MAX(bill_id) AS bill_id, SUM(amount) AS allocated
           FROM payment_allocations WHERE item_reference IS NOT NULL
           GROUP BY item_reference) a ON a.item_reference = e.reference
WHERE e.kind IN ('bill', 'late_fee')
"""
_FILL_CREDIT = """
INSERT INTO open_items (reference, account_id, customer_id, item_kind, bill_id, due_on, amount,
                        open_amount, updated_at)
SELECT 'CR:' || pa.payment_id, pa.account_id, p.customer_id, 'credit', pa.payment_id, NULL, 0,
       -SUM(pa.amount), MAX(pa.allocated_at)
FROM payment_allocations pa JOIN payments p ON p.payment_id = pa.payment_id
WHERE pa.allocated_to = 'credit'
GROUP BY pa.payment_id, pa.account_id, p.customer_id
"""


def upgrade() -> None:
    op.create_table(
        "open_items",
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.String(32), nullable=False),
        sa.Column("item_kind", sa.String(8), nullable=False),
        sa.Column("bill_id", sa.String(40), nullable=True),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("open_amount", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("reference", name=op.f("pk_open_items")),
    )
    op.create_index("ix_open_items_account", "open_items", ["account_id"])
    op.create_index("ix_open_items_open", "open_items", ["account_id", "due_on"],
                    sqlite_where=sa.text("open_amount <> 0"),
                    postgresql_where=sa.text("open_amount <> 0"))
    op.create_index("ix_open_items_credit", "open_items", ["account_id"],
                    sqlite_where=sa.text("open_amount < 0"),
                    postgresql_where=sa.text("open_amount < 0"))
    op.execute(_FILL)
    op.execute(_FILL_CREDIT)
    # late fees accrue daily but reach the ledger at month end or when the accrual closes
    with op.batch_alter_table("late_fee_accruals") as batch_op:
        batch_op.add_column(sa.Column("accrued", sa.BigInteger(), nullable=False,
                                      server_default="0"))
    op.execute("UPDATE late_fee_accruals SET accrued = posted")
    # a day of collections reads what is open or new, never the whole history
    op.create_index("ix_late_fee_accruals_open", "late_fee_accruals", ["bill_id"],
                    sqlite_where=sa.text("closed_on IS NULL"),
                    postgresql_where=sa.text("closed_on IS NULL"))
    op.create_index("ix_late_fee_accruals_due", "late_fee_accruals", ["due_on"])
    op.create_index("ix_notify_outbox_updated", "notify_outbox", ["updated_at"])
    op.create_index("ix_payment_allocations_allocated_at", "payment_allocations",
                    ["allocated_at"])
    op.create_table(
        "events",
        sa.Column("event_id", _ID, autoincrement=True, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("key", sa.String(120), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=True),
        sa.Column("customer_id", sa.String(32), nullable=True),
        sa.Column("occurred_at", _TS, nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("balance_after", sa.BigInteger(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_events")),
        sa.UniqueConstraint("key", name=op.f("uq_events_key")),
    )
    op.create_index("ix_events_account", "events", ["account_id", "event_id"])
    op.create_table(
        "event_deliveries",
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("consumer", sa.String(24), nullable=False),
        sa.Column("handled_at", _TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", "consumer", name=op.f("pk_event_deliveries")),
    )
    op.create_index("ix_event_deliveries_pending", "event_deliveries", ["consumer", "event_id"],
                    sqlite_where=sa.text("handled_at IS NULL"),
                    postgresql_where=sa.text("handled_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_payment_allocations_allocated_at", "payment_allocations")
    op.drop_index("ix_notify_outbox_updated", "notify_outbox")
    op.drop_index("ix_late_fee_accruals_due", "late_fee_accruals")
    op.drop_index("ix_late_fee_accruals_open", "late_fee_accruals")
    op.drop_table("event_deliveries")
    op.drop_table("events")
    op.drop_table("open_items")
    with op.batch_alter_table("late_fee_accruals") as batch_op:
        batch_op.drop_column("accrued")
