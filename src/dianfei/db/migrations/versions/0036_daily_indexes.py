"""indexes that keep a day of collections at the day's size: ix_bills_account,
ix_stop_cases_notice_key, ix_collection_events_account_type and three partial indexes of
collection_tasks

Asked by account alone, bills had only the partial unique index (live bills), so SQLite read
every bill ever issued; the daily task steps (routing, due dates, escalation) scanned every task
ever raised; the daily rating read every event an account ever had to count a few types over
its window. Each of these grew with the history, not with the day's work.

Revision ID: 0036
Revises: 0035
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None


def _where(condition: str) -> dict[str, Any]:
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


def upgrade() -> None:
    op.create_index("ix_bills_account", "bills", ["account_id", "period"])
    op.create_index("ix_collection_tasks_unrouted", "collection_tasks", ["task_id"],
                    **_where("department IS NULL"))
    op.create_index("ix_collection_tasks_undated", "collection_tasks", ["kind"],
                    **_where("due_at IS NULL"))
    op.create_index("ix_collection_tasks_to_escalate", "collection_tasks", ["due_at"],
                    **_where("status = 'open' AND escalated_at IS NULL"))
    op.create_index("ix_stop_cases_notice_key", "stop_cases", ["notice_key"])
    op.create_index("ix_collection_events_account_type", "collection_events",
                    ["account_id", "type", "business_date"])


def downgrade() -> None:
    op.drop_index("ix_collection_events_account_type", table_name="collection_events")
    op.drop_index("ix_stop_cases_notice_key", table_name="stop_cases")
    op.drop_index("ix_collection_tasks_to_escalate", table_name="collection_tasks")
    op.drop_index("ix_collection_tasks_undated", table_name="collection_tasks")
    op.drop_index("ix_collection_tasks_unrouted", table_name="collection_tasks")
    op.drop_index("ix_bills_account", table_name="bills")
