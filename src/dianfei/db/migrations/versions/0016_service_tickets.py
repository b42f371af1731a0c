"""the service-ticket register (工单): complaints and satisfaction for the KPIs

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_tickets",
        sa.Column("ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=12), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("opened_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("decided_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("satisfaction", sa.Integer(), nullable=True),
        sa.CheckConstraint("satisfaction IS NULL OR satisfaction BETWEEN 1 AND 5",
                           name=op.f("ck_service_tickets_satisfaction_1_to_5")),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_service_tickets")),
    )
    op.create_index("ix_service_tickets_opened", "service_tickets", ["opened_at"])
    op.create_index("ix_service_tickets_customer", "service_tickets", ["customer_id", "opened_at"])


def downgrade() -> None:
    op.drop_index("ix_service_tickets_customer", table_name="service_tickets")
    op.drop_index("ix_service_tickets_opened", table_name="service_tickets")
    op.drop_table("service_tickets")
