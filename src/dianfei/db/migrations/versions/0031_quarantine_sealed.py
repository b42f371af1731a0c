"""personal data at rest: import_quarantine.raw_enc, statement_files.body_enc

Rejected rows of a customers import kept name, address and phone in clear in ``raw``. From now
on the import seals the row into ``raw_enc`` and keeps a masked copy in ``raw``. The rows stored
before are sealed by ``dianfei keys reencrypt`` (db/pii.py ``seal_clear_quarantine``): it needs
the PII keys, which a migration must not require.

Statement, bank result and agent files (``statement_files.body``) name account holders and bank
accounts: they are now stored sealed in ``body_enc`` (``body`` left empty); the files stored
before are sealed by the same command (``seal_clear_statement_files``).

Revision ID: 0031
Revises: 0029
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("import_quarantine") as batch:
        batch.add_column(sa.Column("raw_enc", sa.Text(), nullable=True))
    with op.batch_alter_table("statement_files") as batch:
        batch.add_column(sa.Column("body_enc", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("statement_files") as batch:
        batch.drop_column("body_enc")
    with op.batch_alter_table("import_quarantine") as batch:
        batch.drop_column("raw_enc")
