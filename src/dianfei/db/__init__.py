"""Database engine/session, metadata and Alembic migrations."""
