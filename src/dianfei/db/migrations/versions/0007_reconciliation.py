"""reconciliation tables: statement files, withholding mandates, bank batches, reports, worklist

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts() -> dianfei.db.types.UTCDateTime:
    return dianfei.db.types.UTCDateTime()


def upgrade() -> None:
    op.create_table(
        "statement_files",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("channel", sa.String(12), nullable=False),
        sa.Column("layout", sa.String(40), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("received_at", _ts(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_statement_files")),
    )
    with op.batch_alter_table("statement_files", schema=None) as batch_op:
        batch_op.create_index("uq_statement_files_digest", ["kind", "channel", "sha256"], unique=True)

    op.create_table(
        "withholding_mandates",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("bank", sa.String(40), nullable=False),
        sa.Column("bank_account_enc", sa.Text(), nullable=False),
        sa.Column("holder_name", sa.Text(), nullable=False),
        sa.Column("active_from", sa.Date(), nullable=False),
        sa.Column("active_to", sa.Date(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_withholding_mandates")),
    )
    with op.batch_alter_table("withholding_mandates", schema=None) as batch_op:
        batch_op.create_index(
            "uq_withholding_mandates_account", ["account_id", "bank", "active_from"], unique=True
        )
        batch_op.create_index("ix_withholding_mandates_bank", ["bank", "active_from"], unique=False)

    op.create_table(
        "bank_batches",
        sa.Column("batch_id", sa.String(40), nullable=False),
        sa.Column("bank", sa.String(40), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("file_date", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_bank_batches")),
    )
    with op.batch_alter_table("bank_batches", schema=None) as batch_op:
        batch_op.create_index("uq_bank_batches_period", ["bank", "period", "attempt"], unique=True)

    op.create_table(
        "bank_batch_lines",
        sa.Column("batch_id", sa.String(40), nullable=False),
        sa.Column("serial", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("mandate_id", _ID, nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("result_code", sa.String(8), nullable=True),
        sa.Column("reason", sa.String(40), nullable=True),
        sa.Column("payment_id", sa.String(40), nullable=True),
        sa.Column("answered_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("batch_id", "serial", name=op.f("pk_bank_batch_lines")),
    )
    with op.batch_alter_table("bank_batch_lines", schema=None) as batch_op:
        batch_op.create_index("ix_bank_batch_lines_account", ["account_id", "outcome"], unique=False)

    op.create_table(
        "reconciliation_reports",
        sa.Column("channel", sa.String(12), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("run_at", _ts(), nullable=False),
        sa.Column("statement_file_id", _ID, nullable=True),
        sa.Column("settlement_ok", sa.Boolean(), nullable=False),
        sa.Column("figures", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("channel", "day", name=op.f("pk_reconciliation_reports")),
    )

    op.create_table(
        "reconciliation_discrepancies",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(12), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("transaction_id", sa.String(64), nullable=False),
        sa.Column("ref", sa.String(100), nullable=False),
        sa.Column("statement_amount", sa.BigInteger(), nullable=True),
        sa.Column("ledger_amount", sa.BigInteger(), nullable=True),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("payment_id", sa.String(40), nullable=True),
        sa.Column("order_no", sa.String(40), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(40), nullable=False),
        sa.Column("opened_at", _ts(), nullable=False),
        sa.Column("resolved_at", _ts(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_discrepancies")),
    )
    with op.batch_alter_table("reconciliation_discrepancies", schema=None) as batch_op:
        batch_op.create_index(
            "uq_reconciliation_discrepancies", ["channel", "day", "kind", "ref"], unique=True
        )
        batch_op.create_index("ix_reconciliation_discrepancies_open", ["resolved_at", "owner"], unique=False)


def downgrade() -> None:
    for table in (
        "reconciliation_discrepancies",
        "reconciliation_reports",
        "bank_batch_lines",
        "bank_batches",
        "withholding_mandates",
        "statement_files",
    ):
        op.drop_table(table)
