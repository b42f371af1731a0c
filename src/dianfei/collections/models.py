"""Tables of this package (see db/metadata.py; migrations in db/migrations/versions)."""

from __future__ import annotations

from dianfei.db.base import Base

__all__ = ["Base"]
