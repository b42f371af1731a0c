"""The registers a read may name and where a read may come from. Not in ``models.py``: the
import path needs them, and loading the table classes would load SQLAlchemy's ORM (a fifth of a
second of every ``dianfei import`` start-up)."""

from __future__ import annotations

REGISTERS = ("total", "sharp", "peak", "flat", "valley", "kvarh", "demand_kw")
READ_SOURCES = ("ami", "manual", "estimated")
