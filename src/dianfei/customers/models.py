"""Who is supplied, where, through which meter, on which tariff (客户档案).

A customer (用户) holds one or more accounts (户号); an account has service points (用电地址/计量点)
and each service point has meters. In a county branch nearly every customer has exactly one
account, and the simulated utility uses the same id for both.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

CUSTOMER_CLASSES = ("residential", "commercial", "industrial", "large_industry", "agricultural")
PAYMENT_MODES = ("postpaid", "prepaid")


class Region(Base):
    """A town or district (乡镇/区域) used for reporting and collector organisation."""

    __tablename__ = "regions"
    region_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(Text)


class SupplyStation(Base):
    """A supply station (供电所): the unit that reads meters and collects in its area."""

    __tablename__ = "supply_stations"
    station_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    region_id: Mapped[str] = mapped_column(ForeignKey("regions.region_id"))
    name: Mapped[str] = mapped_column(Text)


class Collector(Base):
    """A collector (催费员/抄表员) with a book of accounts in one station."""

    __tablename__ = "collectors"
    collector_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    station_id: Mapped[str] = mapped_column(ForeignKey("supply_stations.station_id"))


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (Index("ix_customers_phone_lookup", "phone_lookup"),)
    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    #: residential, commercial, industrial, large_industry, agricultural (用电类别)
    customer_class: Mapped[str] = mapped_column(String(20))
    region_id: Mapped[str | None] = mapped_column(ForeignKey("regions.region_id"))
    station_id: Mapped[str | None] = mapped_column(ForeignKey("supply_stations.station_id"))
    collector_id: Mapped[str | None] = mapped_column(ForeignKey("collectors.collector_id"))
    address: Mapped[str | None] = mapped_column(Text)
    #: personal data, encrypted at rest (see core.crypto); shown masked
    phone_enc: Mapped[str | None] = mapped_column(Text)
    id_number_enc: Mapped[str | None] = mapped_column(Text)
    #: keyed hash of the normalised phone (``<key id>:<hex>``, core.crypto.lookup_hash): finds
    #: the customer of a phone number (portal sign-in) without decrypting every phone
    phone_lookup: Mapped[str | None] = mapped_column(String(80))
    #: 城乡低保户/农村五保户: entitled to the tariff's free monthly allowance
    low_income: Mapped[bool] = mapped_column(Boolean, default=False)
    #: medical equipment or vulnerable household: never suspended for arrears
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    #: postpaid (后付费) or prepaid / smart prepayment (预付费/智能交费)
    payment_mode: Mapped[str] = mapped_column(String(10), default="postpaid")
    opened_on: Mapped[date] = mapped_column(Date)
    closed_on: Mapped[date | None] = mapped_column(Date)
    #: the language the customer prefers to be spoken to in (zh, yue, bo, ug …; null: not known)
    language: Mapped[str | None] = mapped_column(String(8))


class Account(Base):
    """A billing account (户号): bills, ledger entries and collections hang off it."""

    __tablename__ = "accounts"
    account_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.customer_id"), index=True)
    opened_on: Mapped[date] = mapped_column(Date)
    closed_on: Mapped[date | None] = mapped_column(Date)


#: why an account's supply was off (``supply_interruptions.reason``)
INTERRUPTION_REASONS = ("arrears", "prepayment")


class SupplyInterruption(Base):
    """A span in which an account's supply was off (停电 … 复电): cut for arrears or by smart
    prepayment, until restored.

    What is metered depends on it — a meter behind an open switch registers nothing — so the
    readers of consumption ask for these spans: the theft warnings leave a month with an
    interruption out of an account's signals (its fall is no evidence), the synthetic county's
    meters stand still. Written by whoever switches the supply (collections' stop cases), in the
    transaction that records the switch: ``off_at`` when the supply was cut, ``on_at`` (null
    while it is still off) when it was restored."""

    __tablename__ = "supply_interruptions"
    __table_args__ = (Index("ix_supply_interruptions_account", "account_id", "off_at"),)
    #: what cut it, unique: ``stop_case:{case_id}``
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"))
    #: arrears or prepayment
    reason: Mapped[str] = mapped_column(String(12))
    off_at: Mapped[datetime] = mapped_column(UTCDateTime)
    on_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ServicePoint(Base):
    """A point of supply (用电地址/受电点), with the contracted capacity for two-part tariffs."""

    __tablename__ = "service_points"
    service_point_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"), index=True)
    address: Mapped[str | None] = mapped_column(Text)
    #: contracted transformer capacity in 0.01 kVA (运行容量), for the basic charge by capacity
    capacity_kva: Mapped[int | None] = mapped_column(BigInteger)
    #: "capacity" or "demand": how the basic charge of a two-part tariff is computed
    demand_basis: Mapped[str | None] = mapped_column(String(10))


class Meter(Base):
    """An energy meter (电能表). Consumption = register difference × multiplier (倍率)."""

    __tablename__ = "meters"
    meter_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    service_point_id: Mapped[str] = mapped_column(
        ForeignKey("service_points.service_point_id"), index=True
    )
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"), index=True)
    #: the 12-digit DL/T 645 communication address
    comm_address: Mapped[str | None] = mapped_column(String(12))
    #: the gateway it is reached through (``meter_gateways``); None: the configured default
    gateway_id: Mapped[str | None] = mapped_column(String(32))
    #: current × voltage transformer ratio (综合倍率); 1 for direct-connected meters
    multiplier: Mapped[int] = mapped_column(Integer, default=1)
    #: integer digits of the register: it rolls over (翻转) at 10**digits
    digits: Mapped[int] = mapped_column(Integer, default=6)
    #: registers it reports, comma-separated (total, sharp, peak, flat, valley, kvarh, demand_kw)
    registers: Mapped[str] = mapped_column(Text, default="total")
    installed_on: Mapped[date] = mapped_column(Date)
    removed_on: Mapped[date | None] = mapped_column(Date)


class TariffAssignment(Base):
    """Which tariff an account is on, from when (versioned; never edited, only closed)."""

    __tablename__ = "tariff_assignments"
    __table_args__ = (Index("uq_tariff_assignments_from", "account_id", "effective_from",
                            unique=True),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"))
    tariff_id: Mapped[str] = mapped_column(String(64))
    effective_from: Mapped[date] = mapped_column(Date)
    effective_to: Mapped[date | None] = mapped_column(Date)
