"""personal data at rest: payment_inbox.body_enc, body_sha256

A channel's notification names its payer: Alipay's form carries ``buyer_logon_id`` (a phone
number or an e-mail address, often only partly masked), ``buyer_id`` and ``buyer_email``; an
online gateway's JSON whatever it chose to send; WeChat Pay's envelope is readable by anyone
holding the APIv3 key (the payer's openid). ``payment_inbox.body`` kept every one in clear. From
now on the body is sealed with the personal-data keyring into ``body_enc``, bound to its channel
and digest (``body_sha256``), and ``body`` is left empty. Rows stored before are sealed by
``dianfei keys reencrypt`` (db/pii.py ``seal_clear_inbox``): a migration must not need the keys.

Revision ID: 0033
Revises: 0032 (0032 may be another branch's: the lead re-points this when merging)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_inbox") as batch:
        batch.add_column(sa.Column("body_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("body_enc", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payment_inbox") as batch:
        batch.drop_column("body_enc")
        batch.drop_column("body_sha256")
