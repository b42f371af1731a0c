"""collections tables: events (append-only), late-fee accruals, dunning state, tasks, stop cases,
meter command outbox, payment plans and instalments, waivers, prepay state, daily runs

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "collection_events",
        sa.Column(
            "event_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=24), nullable=False),
        sa.Column("at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("balance_after", sa.BigInteger(), nullable=True),
        sa.Column("level", sa.String(length=40), nullable=True),
        sa.Column("notice", sa.String(length=24), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("bill_id", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_collection_events")),
    )
    op.create_index(
        "ix_collection_events_account", "collection_events", ["account_id", "event_id"], unique=False
    )
    op.create_index("uq_collection_events_key", "collection_events", ["key"], unique=True)
    op.create_table(
        "collection_runs",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("started_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("finished_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("payment_mark", sa.BigInteger(), nullable=False),
        sa.Column("report", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_collection_runs")),
    )
    op.create_table(
        "collection_tasks",
        sa.Column(
            "task_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("due_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("done_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("done_by", sa.String(length=64), nullable=True),
        sa.Column("case_id", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_collection_tasks")),
    )
    op.create_index("ix_collection_tasks_status", "collection_tasks", ["status", "kind"], unique=False)
    op.create_index("uq_collection_tasks_key", "collection_tasks", ["key"], unique=True)
    op.create_table(
        "dunning_state",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("ladder", sa.String(length=40), nullable=False),
        sa.Column("level", sa.String(length=40), nullable=False),
        sa.Column("bill_id", sa.String(length=64), nullable=False),
        sa.Column("since", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_dunning_state")),
    )
    op.create_table(
        "late_fee_accruals",
        sa.Column("bill_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("customer_class", sa.String(length=20), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("through", sa.Date(), nullable=False),
        sa.Column("raw", sa.BigInteger(), nullable=False),
        sa.Column("posted", sa.BigInteger(), nullable=False),
        sa.Column("waived", sa.Boolean(), nullable=False),
        sa.Column("closed_on", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("bill_id", name=op.f("pk_late_fee_accruals")),
    )
    op.create_index(
        op.f("ix_late_fee_accruals_account_id"), "late_fee_accruals", ["account_id"], unique=False
    )
    op.create_table(
        "late_fee_waivers",
        sa.Column(
            "waiver_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("bill_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("approved_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("waiver_id", name=op.f("pk_late_fee_waivers")),
        sa.UniqueConstraint("bill_id", name=op.f("uq_late_fee_waivers_bill_id")),
    )
    op.create_table(
        "meter_commands",
        sa.Column(
            "command_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("meter_id", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("done_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("command_id", name=op.f("pk_meter_commands")),
    )
    op.create_index("ix_meter_commands_status", "meter_commands", ["status", "next_attempt_at"], unique=False)
    op.create_index("uq_meter_commands_key", "meter_commands", ["key"], unique=True)
    op.create_table(
        "payment_plans",
        sa.Column(
            "plan_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("agreed_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("agreed_on", sa.Date(), nullable=False),
        sa.Column("ledger_mark", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("approved_by", sa.String(length=64), nullable=True),
        sa.Column("ended_on", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("plan_id", name=op.f("pk_payment_plans")),
    )
    op.create_index(
        "uq_payment_plans_live_account",
        "payment_plans",
        ["account_id"],
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "plan_instalments",
        sa.Column("plan_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("plan_id", "seq", name=op.f("pk_plan_instalments")),
    )
    op.create_table(
        "prepay_state",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("stage", sa.String(length=10), nullable=False),
        sa.Column("since_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("available", sa.BigInteger(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_prepay_state")),
    )
    op.create_table(
        "stop_cases",
        sa.Column(
            "case_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("customer_class", sa.String(length=20), nullable=False),
        sa.Column("bill_id", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("opened_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("notice_key", sa.String(length=120), nullable=False),
        sa.Column("notice_sent_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("earliest_stop_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("ordered_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("execute_after", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("approval_required", sa.Boolean(), nullable=False),
        sa.Column("approved_by", sa.String(length=64), nullable=True),
        sa.Column("method", sa.String(length=8), nullable=True),
        sa.Column("suspended_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("reconnect_ordered_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("reconnected_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("closed_reason", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_stop_cases")),
    )
    op.create_index("ix_stop_cases_status", "stop_cases", ["status"], unique=False)
    op.create_index(
        "uq_stop_cases_live_account",
        "stop_cases",
        ["account_id"],
        unique=True,
        sqlite_where=sa.text("status != 'closed'"),
        postgresql_where=sa.text("status != 'closed'"),
    )

    # The event history only grows: the database itself refuses UPDATE and DELETE.
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER collection_events_no_{action.lower()} BEFORE {action} "
                "ON collection_events BEGIN SELECT RAISE(ABORT, 'collection_events is append-only'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION collection_events_append_only() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'collection_events is append-only'; END $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER collection_events_append_only BEFORE UPDATE OR DELETE "
            "ON collection_events FOR EACH ROW EXECUTE FUNCTION collection_events_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS collection_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS collection_events_no_delete")
    else:
        op.execute("DROP TRIGGER IF EXISTS collection_events_append_only ON collection_events")
        op.execute("DROP FUNCTION IF EXISTS collection_events_append_only()")
    op.drop_index(
        "uq_stop_cases_live_account",
        table_name="stop_cases",
        sqlite_where=sa.text("status != 'closed'"),
        postgresql_where=sa.text("status != 'closed'"),
    )
    op.drop_index("ix_stop_cases_status", table_name="stop_cases")
    op.drop_table("stop_cases")
    op.drop_table("prepay_state")
    op.drop_table("plan_instalments")
    op.drop_index(
        "uq_payment_plans_live_account",
        table_name="payment_plans",
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )
    op.drop_table("payment_plans")
    op.drop_index("uq_meter_commands_key", table_name="meter_commands")
    op.drop_index("ix_meter_commands_status", table_name="meter_commands")
    op.drop_table("meter_commands")
    op.drop_table("late_fee_waivers")
    op.drop_index(op.f("ix_late_fee_accruals_account_id"), table_name="late_fee_accruals")
    op.drop_table("late_fee_accruals")
    op.drop_table("dunning_state")
    op.drop_index("uq_collection_tasks_key", table_name="collection_tasks")
    op.drop_index("ix_collection_tasks_status", table_name="collection_tasks")
    op.drop_table("collection_tasks")
    op.drop_table("collection_runs")
    op.drop_index("uq_collection_events_key", table_name="collection_events")
    op.drop_index("ix_collection_events_account", table_name="collection_events")
    op.drop_table("collection_events")
