"""collector field work: visits and calls, promises to pay, surveys; the ticket workflow

``collection_visits`` (insert-only: triggers refuse UPDATE and DELETE), ``payment_promises``,
``satisfaction_surveys``; ``service_tickets`` gains the account, what it is about (bill, notice,
visit), status, SLA deadline, escalation and the decision with who made it; its category widens
for the new categories (billing_dispute, meter_question, service, notice_complaint,
collector_complaint).

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = dianfei.db.types.UTCDateTime


def _ticket_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("status", sa.String(length=10), server_default="open", nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("account_id", sa.String(length=32), nullable=True),
        sa.Column("bill_id", sa.String(length=64), nullable=True),
        sa.Column("notice_key", sa.String(length=120), nullable=True),
        sa.Column("visit_id", sa.BigInteger(), nullable=True),
        sa.Column("opened_by", sa.String(length=64), nullable=True),
        sa.Column("sla_due_at", _TS(), nullable=True),
        sa.Column("escalated_at", _TS(), nullable=True),
        sa.Column("escalated_to", sa.String(length=64), nullable=True),
        sa.Column("decision", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "collection_visits",
        sa.Column("visit_id", _ID, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("collector_id", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("at", _TS(), nullable=False),
        sa.Column("recorded_at", _TS(), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("bill_id", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("visit_id", name=op.f("pk_collection_visits")),
    )
    op.create_index("uq_collection_visits_request", "collection_visits", ["request_id"], unique=True)
    op.create_index("ix_collection_visits_account", "collection_visits", ["account_id", "visit_id"])
    op.create_index("ix_collection_visits_collector", "collection_visits", ["collector_id", "at"])
    op.create_table(
        "payment_promises",
        sa.Column("promise_id", _ID, autoincrement=True, nullable=False),
        sa.Column("visit_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("made_at", _TS(), nullable=False),
        sa.Column("made_on", sa.Date(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("ladder_at", sa.String(length=40), nullable=True),
        sa.Column("level_at", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("closed_on", sa.Date(), nullable=True),
        sa.Column("paid", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payment_promises_amount_positive")),
        sa.PrimaryKeyConstraint("promise_id", name=op.f("pk_payment_promises")),
        sa.UniqueConstraint("visit_id", name=op.f("uq_payment_promises_visit_id")),
    )
    op.create_index("ix_payment_promises_open", "payment_promises", ["account_id"],
                    sqlite_where=sa.text("status = 'open'"),
                    postgresql_where=sa.text("status = 'open'"))
    op.create_index("ix_payment_promises_account", "payment_promises", ["account_id", "promise_id"])
    op.create_table(
        "satisfaction_surveys",
        sa.Column("survey_id", _ID, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=True),
        sa.Column("subject", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("at", _TS(), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.CheckConstraint("score BETWEEN 1 AND 5", name=op.f("ck_satisfaction_surveys_score_1_to_5")),
        sa.PrimaryKeyConstraint("survey_id", name=op.f("pk_satisfaction_surveys")),
    )
    op.create_index("uq_satisfaction_surveys_request", "satisfaction_surveys", ["request_id"],
                    unique=True)
    op.create_index("uq_satisfaction_surveys_subject", "satisfaction_surveys",
                    ["subject", "subject_id"], unique=True)
    op.create_index("ix_satisfaction_surveys_at", "satisfaction_surveys", ["at"])

    sqlite = op.get_bind().dialect.name == "sqlite"
    # wider for the new categories (SQLite rebuilds the table, keeping its check and indexes)
    with op.batch_alter_table("service_tickets") as t:
        t.alter_column("category", existing_type=sa.String(length=12), type_=sa.String(length=24),
                       existing_nullable=False)
    for column in _ticket_columns():
        op.add_column("service_tickets", column)
    # tickets of the minimal register that were answered are decided
    op.execute("UPDATE service_tickets SET status = 'decided' WHERE decided_at IS NOT NULL")
    op.create_index("uq_service_tickets_request", "service_tickets", ["request_id"], unique=True)
    op.create_index("ix_service_tickets_account", "service_tickets", ["account_id", "ticket_id"])
    op.create_index("ix_service_tickets_undecided", "service_tickets", ["status", "sla_due_at"],
                    sqlite_where=sa.text("status != 'decided'"),
                    postgresql_where=sa.text("status != 'decided'"))

    # a visit is a record of what happened: never edited, never deleted
    if sqlite:
        for action in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER collection_visits_no_{action.lower()} BEFORE {action} ON "
                       "collection_visits BEGIN SELECT RAISE(ABORT, 'collection_visits is "
                       "insert-only'); END")
    else:
        op.execute("CREATE FUNCTION collection_visits_insert_only() RETURNS trigger AS $$ "
                   "BEGIN RAISE EXCEPTION 'collection_visits is insert-only'; END $$ LANGUAGE plpgsql")
        op.execute("CREATE TRIGGER collection_visits_insert_only BEFORE UPDATE OR DELETE ON "
                   "collection_visits FOR EACH ROW EXECUTE FUNCTION collection_visits_insert_only()")
        op.execute("CREATE TRIGGER collection_visits_no_truncate BEFORE TRUNCATE ON "
                   "collection_visits FOR EACH STATEMENT EXECUTE FUNCTION "
                   "collection_visits_insert_only()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS collection_visits_no_update")
        op.execute("DROP TRIGGER IF EXISTS collection_visits_no_delete")
    else:
        op.execute("DROP TRIGGER IF EXISTS collection_visits_no_truncate ON collection_visits")
        op.execute("DROP TRIGGER IF EXISTS collection_visits_insert_only ON collection_visits")
        op.execute("DROP FUNCTION IF EXISTS collection_visits_insert_only()")
    op.drop_index("ix_service_tickets_undecided", table_name="service_tickets")
    op.drop_index("ix_service_tickets_account", table_name="service_tickets")
    op.drop_index("uq_service_tickets_request", table_name="service_tickets")
    for column in reversed(_ticket_columns()):
        op.drop_column("service_tickets", column.name)
    with op.batch_alter_table("service_tickets") as t:
        t.alter_column("category", existing_type=sa.String(length=24), type_=sa.String(length=12),
                       existing_nullable=False)
    op.drop_table("satisfaction_surveys")
    op.drop_table("payment_promises")
    op.drop_table("collection_visits")
