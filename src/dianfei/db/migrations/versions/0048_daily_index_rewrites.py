"""Indexes the collections day rewrote whole for nothing: ``ix_collection_events_account``
(account_id, event_id) and ``ix_credit_ratings_grade`` go; the repeat defaulters get a small
partial index

An index is rewritten almost whole by a collections day at a million accounts when the day's
changes are spread over the accounts in arrears: an index of a few thousand pages, each holding
a few dozen accounts, gets a change on nearly every page. Measured on the benchmark's steady day
(pages of the SQLite file that differ after the day, 63,631 in all, 250 MB):

- ``ix_collection_events_account``: 4,168 of its 4,168 pages (the day writes ~27,000 events:
  ladder steps, notices sent, ratings). Every reader that narrows by account (an account's
  history, the rating's facts) is served by the leading column of
  ``ix_collection_events_account_type`` (account_id, type, business_date); none walks an
  account's events in id order over a range.
- ``ix_credit_ratings_grade``: 3,068 of its 3,076 pages (4,000 regradings, each a delete and an
  insert of the grade's entry). No query looks ratings up by grade.

The daily read of the repeat defaulters (``WHERE repeat_defaulter``: every day, to give them
their ladder) scanned the whole ratings table; ``ix_credit_ratings_repeat_defaulters`` holds
only them.

Revision ID: 0048
Revises: 0047
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0048"
down_revision = "0047"
branch_labels = None
depends_on = None

REPEAT: dict[str, Any] = {"sqlite_where": sa.text("repeat_defaulter"),
          "postgresql_where": sa.text("repeat_defaulter")}


def upgrade() -> None:
    op.drop_index("ix_collection_events_account", table_name="collection_events")
    op.drop_index("ix_credit_ratings_grade", table_name="credit_ratings")
    op.create_index("ix_credit_ratings_repeat_defaulters", "credit_ratings", ["account_id"],
                    **REPEAT)


def downgrade() -> None:
    op.drop_index("ix_credit_ratings_repeat_defaulters", table_name="credit_ratings")
    op.create_index("ix_credit_ratings_grade", "credit_ratings", ["grade"])
    op.create_index("ix_collection_events_account", "collection_events",
                    ["account_id", "event_id"], unique=False)
