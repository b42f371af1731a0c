"""The console dashboard's figures: the seed paper's KPIs (collection rate, overdue arrears rate,
payment cycle, satisfaction, complaint rate) of the latest period with their trend over the last
:data:`TREND` periods, for all customers or one region / customer class / collector.

Every figure comes from :mod:`dianfei.reporting.kpi` (the same definitions as ``dianfei kpi``,
docs/kpi.md). Computing them reads a year of bills and clearings — minutes on a million
accounts — so a view must not compute them:

- **Stored figures** (``dashboard_figures``): the ``dashboard_refresh`` job (daily, and queued
  after every bill run; ``dianfei kpi refresh`` by hand) reads the period's inputs once and
  stores the dashboard for every customer and for each region, customer class and collector. A
  view is then one primary-key read. The page says the day the figures are as of and when they
  were computed.
- **Computed on view** only for what the job does not store (an older period, two filters at
  once, a database the job has not run on yet): cached in the process while the ledger is
  unchanged (its entry count: entries are only ever appended) and the day is the same. Views
  arriving while a computation runs wait for it rather than start their own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import date
from typing import TYPE_CHECKING, Any

from dianfei.core.clock import Period
from dianfei.reporting import kpi

if TYPE_CHECKING:
    import polars as pl

    from dianfei.core.clock import Clock
    from dianfei.db.engine import Database

TREND = kpi.TREND_PERIODS
#: the five headline KPIs, in the order the dashboard shows them
HEADLINE = ("collection_rate", "overdue_rate", "avg_payment_days", "satisfaction",
            "complaint_rate")
#: cached dashboards (each a few kB): the least recently viewed goes first
_MAX_CACHED = 256


@dataclass(frozen=True)
class Filters:
    """Which customers the figures cover (None: every one)."""

    region: str | None = None
    customer_class: str | None = None
    collector: str | None = None

    def active(self) -> bool:
        return any((self.region, self.customer_class, self.collector))


def _only(inp: kpi.Inputs, f: Filters) -> kpi.Inputs:
    """The inputs of the customers matching ``f`` (every frame cut to their rows)."""
    import polars as pl

    if not f.active():
        return inp
    cust = inp.customers
    for column, value in (("region_id", f.region), ("customer_class", f.customer_class),
                          ("collector_id", f.collector)):
        if value:
            cust = cust.filter(pl.col(column) == value)
    ids = cust.select("customer_id")
    bills = inp.bills.join(ids, on="customer_id", how="semi")

    def mine(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.join(ids, on="customer_id", how="semi")

    return replace(
        inp, customers=cust, bills=bills,
        clearings=inp.clearings.join(bills.select("bill_id"), on="bill_id", how="semi"),
        tickets=mine(inp.tickets), notices=mine(inp.notices), unbilled=mine(inp.unbilled),
        suspensions=inp.suspensions.join(bills.select("account_id").unique(), on="account_id",
                                         how="semi"))


@dataclass(frozen=True)
class Loaded:
    """What the dashboards of one period read, read once for every filter: the KPI inputs of
    every customer and the tickets and surveys of each earlier period of the trend window."""

    everyone: kpi.Inputs
    window: list[Period]
    #: period → customer_id, category, satisfaction (the current period's are in ``everyone``)
    past_tickets: dict[str, pl.DataFrame]


def load(db: Database, period: Period, as_of: date) -> Loaded:
    """Read the inputs of ``period``'s dashboards (a few set reads through each package's
    service)."""
    import polars as pl

    from dianfei.collections.service import surveys_between, tickets_between
    from dianfei.core.clock import start_of_day

    everyone = kpi.load_inputs(db, period, as_of, TREND)
    window = [kpi.first_of_window(period, TREND)]
    while window[-1] != period:
        window.append(window[-1].next())
    past: dict[str, pl.DataFrame] = {}
    for p in window[:-1]:
        since, until = start_of_day(p.first_day), start_of_day(p.end_date)
        past[str(p)] = pl.concat([
            tickets_between(db.engine, since, until).select(
                "customer_id", "category", "satisfaction"),
            surveys_between(db.engine, since, until).select(
                "customer_id", pl.lit("survey").alias("category"), "satisfaction")])
    return Loaded(everyone=everyone, window=window, past_tickets=past)


def _service_trend(loaded: Loaded, inp: kpi.Inputs, as_of: date,
                   f: Filters) -> dict[str, dict[str, Any]]:
    """Complaint rate and satisfaction of each period (their tickets and surveys, the
    customers open at each period's end)."""
    out: dict[str, dict[str, Any]] = {}
    for p in loaded.window:
        if p == inp.period:
            one = inp
        else:
            base = loaded.everyone
            one = _only(replace(base, period=p, bills=base.bills.clear(),
                                clearings=base.clearings.clear(),
                                tickets=loaded.past_tickets[str(p)],
                                notices=base.notices.clear(), unbilled=base.unbilled.clear(),
                                suspensions=base.suspensions.clear()), f)
        got = kpi.service_figures(one, as_of).get("all", {})
        out[str(p)] = {"complaint_rate": got.get("complaint_rate"),
                       "satisfaction": got.get("satisfaction")}
    return out


def figures(loaded: Loaded, as_of: date, f: Filters) -> dict[str, Any]:
    """The dashboard of the loaded period for the customers matching ``f``: ``latest`` (every
    key of ``dianfei kpi``) and ``trend`` (oldest first: period and the five headline KPIs).
    Raises ValidationError when those customers have no bills of the period."""
    inp = _only(loaded.everyone, f)
    latest = kpi.compute(inp, as_of, None, TREND)
    service = _service_trend(loaded, inp, as_of, f)
    money = {t["period"]: t for t in latest.pop("trend")}
    trend = [{"period": str(p),
              "collection_rate": money.get(str(p), {}).get("collection_rate"),
              "overdue_rate": money.get(str(p), {}).get("overdue_rate"),
              "avg_payment_days": money.get(str(p), {}).get("avg_payment_days"),
              **service[str(p)]} for p in loaded.window]
    return {"period": str(inp.period), "as_of": as_of.isoformat(), "latest": latest,
            "trend": trend}


def compute(db: Database, period: Period, as_of: date, f: Filters) -> dict[str, Any]:
    """The dashboard of ``period`` as of ``as_of`` (read and computed now, nothing stored)."""
    return figures(load(db, period, as_of), as_of, f)


_cache: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
_lock = threading.Lock()
#: the keys being computed, each with the lock its computation holds
_computing: dict[tuple[Any, ...], threading.Lock] = {}


def filter_key(f: Filters) -> str:
    """The stored row's key of ``f``: "" for every customer, "region=R", "region=R&collector=K"."""
    return "&".join(f"{name}={value}" for name, value in (
        ("region", f.region), ("customer_class", f.customer_class), ("collector", f.collector))
        if value)


def stored(db: Database, period: Period, f: Filters) -> dict[str, Any] | None:
    """The stored dashboard of ``period`` for ``f`` (None: the job has not stored one), with
    ``computed_at``."""
    import json

    from sqlalchemy import select

    from dianfei.reporting.models import DashboardFigures as D

    with db.engine.connect() as conn:
        row = conn.execute(select(D.payload, D.computed_at).where(
            D.period == str(period), D.filter_key == filter_key(f))).one_or_none()
    if row is None:
        return None
    return {**json.loads(row.payload), "computed_at": row.computed_at.isoformat()}


def dashboard(db: Database, period: Period, as_of: date, f: Filters) -> dict[str, Any]:
    """The stored figures when the job has stored them, else :func:`compute` cached (see the
    module docstring). ``stored`` and ``cached`` say which it was."""
    kept = stored(db, period, f)
    if kept is not None:
        return {**kept, "stored": True, "cached": True}
    return {**_computed(db, period, as_of, f), "stored": False}


def _ledger_version(db: Database) -> int:
    """How many ledger entries there are: every bill issued or cancelled, payment, reversal and
    write-off appends one and none is ever deleted, so while it stays the same no money moved.
    (A count, not the highest id: ids commit out of order on PostgreSQL.)"""
    from dianfei.ledger.service import entry_count

    with db.engine.connect() as conn:
        return entry_count(conn)


def _computed(db: Database, period: Period, as_of: date, f: Filters) -> dict[str, Any]:
    key = (str(db.engine.url), str(period), as_of, f, _ledger_version(db))
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return {**hit, "cached": True}
        gate = _computing.setdefault(key, threading.Lock())
    # one computation per key: views arriving meanwhile wait for it instead of starting their own
    with gate:
        with _lock:
            hit = _cache.get(key)
        if hit is not None:
            return {**hit, "cached": True}
        try:
            fresh = compute(db, period, as_of, f)
            with _lock:  # cached before the gate goes: a later view finds one or the other
                _cache[key] = fresh
                while len(_cache) > _MAX_CACHED:
                    _cache.popitem(last=False)
        finally:
            with _lock:
                _computing.pop(key, None)
    return {**fresh, "cached": False}


def latest_period(db: Database) -> Period | None:
    """The latest period with bills (None: nothing billed yet): one index look-up."""
    from dianfei.billing.service import latest_billed_period

    found = latest_billed_period(db.engine)
    return None if found is None else Period.parse(found)


def refresh_filters(customers: pl.DataFrame) -> list[Filters]:
    """What the job stores: every customer, then each region, customer class and collector that
    has customers."""
    def values(column: str) -> list[str]:
        return [str(v) for v in customers.get_column(column).drop_nulls().unique().sort()]

    return [Filters(), *(Filters(region=v) for v in values("region_id")),
            *(Filters(customer_class=v) for v in values("customer_class")),
            *(Filters(collector=v) for v in values("collector_id"))]


def refresh(db: Database, *, clock: Clock, period: Period | None = None,
            as_of: date | None = None) -> dict[str, Any]:
    """Compute and store ``period``'s dashboards (default: the latest billed period, as of the
    business day) for every customer and each region, class and collector; the period's rows are
    replaced in one transaction. A filter whose customers have no bills of the period is left
    out (its view says so, computed on view). Returns counts for the job's record."""
    import json
    import time

    from sqlalchemy import delete, insert

    from dianfei.core.clock import business_date
    from dianfei.core.errors import ValidationError
    from dianfei.reporting.models import DashboardFigures as D

    started = time.perf_counter()
    period = period or latest_period(db)
    if period is None:
        return {"period": None, "stored": 0, "note": "nothing billed yet"}
    day = as_of or max(business_date(clock.now()), period.first_day)
    loaded = load(db, period, day)
    now = clock.now()
    rows, empty = [], []
    for f in refresh_filters(loaded.everyone.customers):
        try:
            got = figures(loaded, day, f)
        except ValidationError:
            empty.append(filter_key(f) or "all")
            continue
        rows.append({"period": str(period), "filter_key": filter_key(f), "as_of": day,
                     "computed_at": now, "payload": json.dumps(got, sort_keys=True)})
    with db.engine.begin() as conn:
        conn.execute(delete(D).where(D.period == str(period)))
        if rows:
            conn.execute(insert(D), rows)
    forget()
    return {"period": str(period), "as_of": day.isoformat(), "stored": len(rows),
            "without_bills": len(empty), "seconds": round(time.perf_counter() - started, 1)}


def forget() -> None:
    """Drop every cached dashboard (tests; a figure changed outside the ledger)."""
    with _lock:
        _cache.clear()
