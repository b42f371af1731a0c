"""Tables of channel statements and reconciliation (see db/metadata.py; migration 0007)."""

from __future__ import annotations

from dianfei.db.base import Base

__all__ = ["Base"]
