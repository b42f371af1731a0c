"""Register reads (抄表示数)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

REGISTERS = ("total", "sharp", "peak", "flat", "valley", "kvarh", "demand_kw")
READ_SOURCES = ("ami", "manual", "estimated")


class RegisterRead(Base):
    """One register value at one instant, as the meter showed it (before the multiplier).

    ``value`` is in 0.01 units (kWh, kvarh, kW). Cumulative registers roll over at
    10**digits; ``demand_kw`` is the period's maximum demand, not cumulative.
    """

    __tablename__ = "register_reads"
    __table_args__ = (
        Index("uq_register_reads_meter_register_at", "meter_id", "register", "read_at",
              unique=True),
        Index("ix_register_reads_read_at", "read_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    meter_id: Mapped[str] = mapped_column(String(32))
    read_at: Mapped[datetime] = mapped_column(UTCDateTime)
    register: Mapped[str] = mapped_column(String(12))
    value: Mapped[int] = mapped_column(BigInteger)
    #: ami, manual or estimated — a bill built on an estimated read says so
    source: Mapped[str] = mapped_column(String(10))
