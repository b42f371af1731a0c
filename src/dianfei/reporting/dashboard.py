"""The console dashboard's figures: the seed paper's KPIs (collection rate, overdue arrears rate,
payment cycle, satisfaction, complaint rate) of the latest period with their trend over the last
:data:`TREND` periods, for all customers or one region / customer class / collector.

Every figure comes from :mod:`dianfei.reporting.kpi` (the same definitions as ``dianfei kpi``,
docs/kpi.md). Computing them reads a year of bills and clearings — seconds to minutes on a
million accounts — so the figures are cached in the process: computed on the first view of a
(period, as-of day, filter), kept while the ledger's high-water mark stays the same (every bill
issued or cancelled, payment, reversal and write-off appends a ledger entry) and the day has not
changed. Tickets and surveys recorded since are counted at the next ledger change or next day.
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


def _service_trend(db: Database, inp: kpi.Inputs, periods: list[Period], as_of: date,
                   f: Filters) -> dict[str, dict[str, Any]]:
    """Complaint rate and satisfaction of each period (their tickets and surveys, the
    customers open at each period's end)."""
    import polars as pl

    from dianfei.collections.service import surveys_between, tickets_between
    from dianfei.core.clock import start_of_day

    out: dict[str, dict[str, Any]] = {}
    for p in periods:
        if p == inp.period:
            one = inp
        else:
            since, until = start_of_day(p.first_day), start_of_day(p.end_date)
            tickets = pl.concat([
                tickets_between(db.engine, since, until).select(
                    "customer_id", "category", "satisfaction"),
                surveys_between(db.engine, since, until).select(
                    "customer_id", pl.lit("survey").alias("category"), "satisfaction")])
            one = _only(replace(inp, period=p, bills=inp.bills.clear(),
                                clearings=inp.clearings.clear(), tickets=tickets,
                                notices=inp.notices.clear(), unbilled=inp.unbilled.clear(),
                                suspensions=inp.suspensions.clear(),
                                customers=inp.customers), f)
        got = kpi.service_figures(one, as_of).get("all", {})
        out[str(p)] = {"complaint_rate": got.get("complaint_rate"),
                       "satisfaction": got.get("satisfaction")}
    return out


def compute(db: Database, period: Period, as_of: date, f: Filters) -> dict[str, Any]:
    """The dashboard of ``period`` as of ``as_of`` (uncached): ``latest`` (every key of
    ``dianfei kpi``) and ``trend`` (oldest first: period and the five headline KPIs)."""
    everyone = kpi.load_inputs(db, period, as_of, TREND)
    inp = _only(everyone, f)
    latest = kpi.compute(inp, as_of, None, TREND)
    window = [kpi.first_of_window(period, TREND)]
    while window[-1] != period:
        window.append(window[-1].next())
    service = _service_trend(db, everyone if not f.active() else inp, window, as_of, f)
    money = {t["period"]: t for t in latest.pop("trend")}
    trend = [{"period": str(p),
              "collection_rate": money.get(str(p), {}).get("collection_rate"),
              "overdue_rate": money.get(str(p), {}).get("overdue_rate"),
              "avg_payment_days": money.get(str(p), {}).get("avg_payment_days"),
              **service[str(p)]} for p in window]
    return {"period": str(period), "as_of": as_of.isoformat(), "latest": latest, "trend": trend}


_cache: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
_lock = threading.Lock()
#: the keys being computed, each with the lock its computation holds
_computing: dict[tuple[Any, ...], threading.Lock] = {}


def dashboard(db: Database, period: Period, as_of: date, f: Filters) -> dict[str, Any]:
    """:func:`compute`, cached (see the module docstring); ``cached`` says which it was."""
    from dianfei.ledger.service import high_water

    with db.engine.connect() as conn:
        mark = high_water(conn)
    key = (str(db.engine.url), str(period), as_of, f, mark)
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
    """The latest period with bills (None: nothing billed yet), cached like the figures."""
    from dianfei.billing.service import period_totals
    from dianfei.ledger.service import high_water

    with db.engine.connect() as conn:
        mark = high_water(conn)
    key = (str(db.engine.url), "latest", mark)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]["period"]  # type: ignore[no-any-return]
    totals = period_totals(db)
    found = None if totals.height == 0 else Period.parse(str(totals["period"].max()))
    with _lock:
        _cache[key] = {"period": found}
    return found


def forget() -> None:
    """Drop every cached dashboard (tests; a figure changed outside the ledger)."""
    with _lock:
        _cache.clear()
