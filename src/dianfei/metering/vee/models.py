"""Tables of VEE (数据校核、估算与修正): runs, findings, estimates and manual edits.

Metered intervals live in the interval store and are never written here; estimates and edits sit
beside them in their own tables, so "what the meter said" is always recoverable. Findings and
estimates are unique on a deterministic key, so a second ``vee run`` over the same data inserts
nothing. Manual edits are append-only (database triggers refuse UPDATE and DELETE): a correction
of an edit is a newer edit.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Float, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

__all__ = ["Base", "VeeEdit", "VeeEstimate", "VeeExaminedBatch", "VeeFinding", "VeeReadReview", "VeeRun",
           "VeeRunFinding"]


class VeeRun(Base):
    """One ``vee run``: when, with which settings, and what it added."""

    __tablename__ = "vee_runs"
    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the [vee] settings in force, as JSON (so a finding can be traced to its thresholds)
    settings: Mapped[str] = mapped_column(Text)
    findings_added: Mapped[int] = mapped_column(Integer, default=0)
    estimates_added: Mapped[int] = mapped_column(Integer, default=0)
    #: the business days examined: ``all``, or ``FROM..TO`` (either side may be empty)
    scope: Mapped[str | None] = mapped_column(String(24), default=None)
    #: what the run's results depend on, as it was when the run read it (``vee/results.py``);
    #: set only on the newest run whose results are kept, null on the others
    fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)
    #: the run's ``vee report`` figures, as JSON
    figures: Mapped[str | None] = mapped_column(Text, default=None)


class VeeFinding(Base):
    """A validation finding (校核异常): the rule, the meter, the instant and what was seen.

    ``ref`` tells apart findings of one rule at one instant (the register, or the import batch
    of a duplicate); ``value_wh`` is the value judged, in thousandths (Wh for energy).
    """

    __tablename__ = "vee_findings"
    __table_args__ = (
        Index("uq_vee_findings_key", "rule", "meter_id", "ts", "ref", unique=True),
        Index("ix_vee_findings_meter", "meter_id", "ts"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(32))
    meter_id: Mapped[str] = mapped_column(String(32))
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    ref: Mapped[str] = mapped_column(String(80), default="")
    value_wh: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(Text)
    #: the run that first found it
    run_id: Mapped[str] = mapped_column(String(32))


class VeeRunFinding(Base):
    """A finding of the newest run exactly as computed (``vee findings`` answers from these while
    nothing changed since the run). ``vee_findings`` keeps every finding as first found, also
    those that later data or settings made obsolete, so it cannot answer for the data now."""

    __tablename__ = "vee_run_findings"
    __table_args__ = (Index("ix_vee_run_findings_run_rule", "run_id", "rule", "meter_id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32))
    rule: Mapped[str] = mapped_column(String(32))
    meter_id: Mapped[str] = mapped_column(String(32))
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    ref: Mapped[str] = mapped_column(String(80), default="")
    value_wh: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(Text)


class VeeEstimate(Base):
    """An estimated interval (估算电量), flagged and traceable: how (``method``), from what
    (``inputs``) and by which run. Never stored for a slot that had a metered value; a metered
    value that arrives later takes precedence over it without deleting it."""

    __tablename__ = "vee_estimates"
    __table_args__ = (Index("uq_vee_estimates_meter_ts", "meter_id", "ts", unique=True),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    meter_id: Mapped[str] = mapped_column(String(32))
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    minutes: Mapped[int] = mapped_column(SmallInteger)
    wh: Mapped[int] = mapped_column(BigInteger)
    #: linear, profile_weekday, profile_time_of_day, meter_average
    method: Mapped[str] = mapped_column(String(24))
    inputs: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str] = mapped_column(String(32))


class VeeEdit(Base):
    """A manual edit (人工修正) of one interval: who, when, the value before, the new value and
    why. Append-only; the newest edit of a slot is its value from then on (above metered and
    estimated values); the metered value itself stays in the interval store."""

    __tablename__ = "vee_edits"
    __table_args__ = (Index("ix_vee_edits_meter_ts", "meter_id", "ts", "edit_id"),)
    edit_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                         primary_key=True, autoincrement=True)
    meter_id: Mapped[str] = mapped_column(String(32))
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    minutes: Mapped[int] = mapped_column(SmallInteger)
    #: the value in use before the edit (null when the slot had none) and where it came from:
    #: metered, estimated, edited or missing
    old_wh: Mapped[int | None] = mapped_column(BigInteger)
    old_source: Mapped[str] = mapped_column(String(10))
    new_wh: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    edited_by: Mapped[str] = mapped_column(String(64))
    edited_at: Mapped[datetime] = mapped_column(UTCDateTime)


class VeeReadReview(Base):
    """A person's decision on a register read held as implausible (``implausible_read``): the
    meter did register it (``released``: from then on it counts, for a prepaid balance too) or
    it is wrong (``rejected``: it stays out). One decision per meter and instant; audited."""

    __tablename__ = "vee_read_reviews"
    meter_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    read_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    #: released | rejected
    decision: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)


class VeeMeterProfile(Base):
    """A meter's kept statistics over its last months (``metering/vee/profiles.py``): what the
    spike and usage rules call its usual high and usual days, so that a run over one day judges
    by the meter's year. One row per (meter, kind, season, band); rebuilt, never edited."""

    __tablename__ = "vee_meter_profiles"
    __table_args__ = (Index("uq_vee_meter_profiles_key", "meter_id", "kind", "season", "band",
                            unique=True),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    meter_id: Mapped[str] = mapped_column(String(32))
    #: spike_cell (season × band of the day), spike_band, usage_season, usage_all
    kind: Mapped[str] = mapped_column(String(16))
    #: 0 winter … 3 autumn; −1 for the kinds without one
    season: Mapped[int] = mapped_column(SmallInteger)
    #: the band of the day (spike_band_hours long); −1 for the usage kinds
    band: Mapped[int] = mapped_column(SmallInteger)
    #: watt-hours (an interval's for the spike kinds, a day's for the usage kinds): statistics,
    #: not money — quantiles interpolate between values
    hi: Mapped[float] = mapped_column(Float)
    lo: Mapped[float] = mapped_column(Float)
    med: Mapped[float] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    data_from: Mapped[date] = mapped_column(Date)
    data_to: Mapped[date] = mapped_column(Date)
    built_at: Mapped[datetime] = mapped_column(UTCDateTime)


class VeeExaminedBatch(Base):
    """An import batch whose days a run has examined (``vee run --pending``, the nightly job, or
    a run over the whole store). The nightly run examines the days of the batches not yet here —
    whatever they are: yesterday's reads, a late concentrator, two years of history — instead
    of the whole store, which grows every night. A batch is added in the transaction of the run
    that examined it, so one that commits during a run is examined by the next."""

    __tablename__ = "vee_examined_batches"
    batch_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(32))
    examined_at: Mapped[datetime] = mapped_column(UTCDateTime)
