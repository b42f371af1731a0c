"""users, API tokens, failed sign-ins; the audit chain (records, head) and ledger batches

``ledger_entries.audit_batch`` names the audit record that covers each ledger row (one record per
posting or bulk chunk, carrying the digest of its rows). A database that already holds ledger
rows gets one ``ledger.adopted`` record covering them (batch 0), so ``audit verify`` starts from
what was there and catches any change made to it afterwards.

Revision ID: 0018
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0016"
branch_labels = None
depends_on = None

_UTC = sa.DateTime()


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("user_id", _id(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("role", sa.String(24), nullable=False),
        sa.Column("customer_id", sa.String(32), nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.customer_id"],
                                name=op.f("fk_users_customer_id_customers")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("expires_at", _UTC, nullable=False),
        sa.Column("revoked_at", _UTC, nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"],
                                name=op.f("fk_api_tokens_user_id_users")),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_api_tokens")),
    )
    op.create_index("ix_api_tokens_user", "api_tokens", ["user_id"])
    op.create_table(
        "sign_in_failures",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("at", _UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_failures")),
    )
    op.create_index("ix_sign_in_failures_username", "sign_in_failures", ["username", "at"])
    op.create_index("ix_sign_in_failures_source", "sign_in_failures", ["source", "at"])

    op.create_table(
        "audit_records",
        sa.Column("seq", _id(), autoincrement=False, nullable=False),
        sa.Column("recorded_at", _UTC, nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("action", sa.String(48), nullable=False),
        sa.Column("subject", sa.String(120), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("ledger_batch", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_records")),
    )
    op.create_index("ix_audit_records_action", "audit_records", ["action", "seq"])
    op.create_index("ix_audit_records_subject", "audit_records", ["subject", "seq"])
    op.create_index("ix_audit_records_ledger_batch", "audit_records", ["ledger_batch"],
                    unique=True)
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.execute(f"INSERT INTO audit_head (id, seq, hash, prev_hash) VALUES (1, 0, '{'0' * 64}', '')")
    op.add_column("ledger_entries", sa.Column("audit_batch", sa.BigInteger(), nullable=True))

    # the chain only grows, like the ledger: the database refuses UPDATE and DELETE of records
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_records_no_{action.lower()} BEFORE {action} "
                "ON audit_records BEGIN SELECT RAISE(ABORT, 'audit_records is append-only'); END")
    else:
        op.execute("CREATE FUNCTION audit_records_append_only() RETURNS trigger AS $$ "
                   "BEGIN RAISE EXCEPTION 'audit_records is append-only'; END $$ "
                   "LANGUAGE plpgsql")
        op.execute("CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON "
                   "audit_records FOR EACH ROW EXECUTE FUNCTION audit_records_append_only()")
    _adopt_ledger()


def _adopt_ledger() -> None:
    """One record for the ledger rows written before the chain existed (batch 0)."""
    from dianfei.audit.service import adopt_ledger

    adopt_ledger(op.get_bind())


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER audit_records_no_update")
        op.execute("DROP TRIGGER audit_records_no_delete")
    else:
        op.execute("DROP TRIGGER audit_records_append_only ON audit_records")
        op.execute("DROP FUNCTION audit_records_append_only()")
    with op.batch_alter_table("ledger_entries") as batch_op:
        batch_op.drop_column("audit_batch")
    op.drop_table("audit_head")
    op.drop_table("audit_records")
    op.drop_table("sign_in_failures")
    op.drop_table("api_tokens")
    op.drop_table("users")
