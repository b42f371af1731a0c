"""Alembic environment: runs on the connection handed in by dianfei.db.engine.migrate."""

from __future__ import annotations

from alembic import context

from dianfei.db.metadata import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # `alembic` CLI use: build an engine from settings
        from dianfei.core.settings import load_settings
        from dianfei.db.engine import make_engine

        engine = make_engine(load_settings().database_url)
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=target_metadata,
                              render_as_batch=True)
            context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True)
    context.run_migrations()


run()
