"""notify tables: outbox, delivery attempts, contacts, opt-outs

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "notify_outbox",
        sa.Column("outbox_id", _ID, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("notice", sa.String(length=24), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("locale", sa.String(length=10), nullable=True),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("queued_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("not_before", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("next_attempt_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("sent_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("delivered_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("provider_ref", sa.Text(), nullable=True),
        sa.Column("fallback_of", _ID, nullable=True),
        sa.Column("updated_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["fallback_of"], ["notify_outbox.outbox_id"],
                                name=op.f("fk_notify_outbox_fallback_of_notify_outbox")),
        sa.PrimaryKeyConstraint("outbox_id", name=op.f("pk_notify_outbox")),
    )
    with op.batch_alter_table("notify_outbox", schema=None) as batch_op:
        batch_op.create_index("uq_notify_outbox_key", ["key"], unique=True)
        batch_op.create_index("ix_notify_outbox_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_notify_outbox_account", ["account_id", "queued_at"], unique=False)
        batch_op.create_index("ix_notify_outbox_customer", ["customer_id", "channel", "claimed_at"],
                              unique=False)

    op.create_table(
        "notify_attempts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("outbox_id", _ID, nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("started_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("finished_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=10), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("provider_ref", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["outbox_id"], ["notify_outbox.outbox_id"],
                                name=op.f("fk_notify_attempts_outbox_id_notify_outbox")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_attempts")),
    )
    with op.batch_alter_table("notify_attempts", schema=None) as batch_op:
        batch_op.create_index("uq_notify_attempts_outbox_no", ["outbox_id", "attempt_no"], unique=True)

    op.create_table(
        "notify_contacts",
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("email_enc", sa.Text(), nullable=True),
        sa.Column("wechat_openid", sa.String(length=64), nullable=True),
        sa.Column("locale", sa.String(length=10), nullable=True),
        sa.Column("updated_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_notify_contacts")),
    )

    op.create_table(
        "notify_opt_outs",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("opted_out_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("withdrawn_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_opt_outs")),
    )
    with op.batch_alter_table("notify_opt_outs", schema=None) as batch_op:
        batch_op.create_index(
            "uq_notify_opt_outs_active", ["customer_id", "channel"], unique=True,
            sqlite_where=sa.text("withdrawn_at IS NULL"),
            postgresql_where=sa.text("withdrawn_at IS NULL"),
        )


def downgrade() -> None:
    op.drop_table("notify_opt_outs")
    op.drop_table("notify_contacts")
    op.drop_table("notify_attempts")
    op.drop_table("notify_outbox")
