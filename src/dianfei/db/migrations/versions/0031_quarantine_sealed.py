"""quarantine: import_quarantine.raw_enc (rejected rows with personal data sealed)

Rejected rows of a customers import kept name, address and phone in clear in ``raw``. From now
on the import seals the row into ``raw_enc`` and keeps a masked copy in ``raw``. The rows stored
before are sealed by ``dianfei keys reencrypt`` (db/pii.py ``seal_clear_quarantine``): it needs
the PII keys, which a migration must not require.

Revision ID: 0031
Revises: 0028
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("import_quarantine") as batch:
        batch.add_column(sa.Column("raw_enc", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("import_quarantine") as batch:
        batch.drop_column("raw_enc")
