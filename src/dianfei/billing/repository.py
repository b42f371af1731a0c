"""Queries of the billing domain (all SQL of billing lives here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, text

from dianfei.core.clock import Period
from dianfei.db.frames import read_frame
from dianfei.db.lists import any_of


def _sqlite_columns(engine: Engine, sql: str, params: dict[str, Any],
                    schema: dict[str, Any]) -> pl.DataFrame | None:
    """:func:`dianfei.db.frames.sqlite_columns` (SQLite only, else None)."""
    from dianfei.db.frames import sqlite_columns

    return sqlite_columns(engine, sql, params, schema)


_BILLABLE = (
    "SELECT a.account_id, a.customer_id, c.customer_class, c.low_income, "
    "sp.capacity_kva, sp.demand_basis, m.meter_id, m.multiplier, m.digits, "
    "ta.tariff_id, ta.effective_from AS tariff_from "
    "FROM accounts a JOIN customers c ON c.customer_id = a.customer_id "
    "LEFT JOIN service_points sp ON sp.account_id = a.account_id "
    "LEFT JOIN meters m ON m.account_id = a.account_id AND m.installed_on <= :last "
    "  AND (m.removed_on IS NULL OR m.removed_on >= :first) "
    "LEFT JOIN tariff_assignments ta ON ta.account_id = a.account_id "
    "  AND ta.effective_from <= :last AND (ta.effective_to IS NULL OR ta.effective_to > :last) "
    "WHERE a.opened_on <= :last AND (a.closed_on IS NULL OR a.closed_on >= :first)")


def billable_accounts(engine: Engine, period: Period) -> pl.DataFrame:
    """Accounts open during the period, with their customer, service point, meter and the tariff
    assignment rows that could be in force (the caller picks the latest)."""
    params = {"first": period.first_day, "last": period.last_day}
    fast = _sqlite_columns(engine, _BILLABLE, params, {
        "account_id": pl.String, "customer_id": pl.String, "customer_class": pl.String,
        "low_income": pl.Boolean, "capacity_kva": pl.Int64, "demand_basis": pl.String,
        "meter_id": pl.String, "multiplier": pl.Int64, "digits": pl.Int64,
        "tariff_id": pl.String, "tariff_from": pl.Date})
    if fast is not None:
        return fast
    return read_frame(engine, _BILLABLE, params, dates=("tariff_from",),
                      schema={"capacity_kva": pl.Int64, "multiplier": pl.Int64,
                              "digits": pl.Int64, "low_income": pl.Boolean})


def live_bill_accounts(engine: Engine, period: Period) -> pl.DataFrame:
    return read_frame(
        engine, "SELECT account_id FROM bills WHERE period = :p AND status <> 'cancelled'", {"p": str(period)}
    )


def run_exception_accounts(engine: Engine, run_id: str) -> pl.DataFrame:
    return read_frame(engine, "SELECT account_id FROM bill_exceptions WHERE run_id = :r", {"r": run_id})


def cancelled_counts(engine: Engine, period: Period) -> pl.DataFrame:
    return read_frame(
        engine,
        "SELECT account_id, count(*) AS cancelled FROM bills "
        "WHERE period = :p AND status = 'cancelled' GROUP BY account_id",
        {"p": str(period)},
        schema={"cancelled": pl.Int64},
    )




def year_to_date_kwh(engine: Engine, period: Period, accounts: pl.Series | None = None,
                     kept: pl.DataFrame | None = None) -> pl.DataFrame:
    """Energy already billed this calendar year before ``period`` (annual tiers split on it):
    account_id, ytd_kwh. ``kept`` (account_id, ytd_kwh): what the previous period's bills keep
    (:func:`previous_period`), taken as it is; the year is summed only for the other
    ``accounts`` (all accounts when ``accounts`` is None)."""
    schema = {"account_id": pl.String, "ytd_kwh": pl.Int64}
    if period.month == 1:
        return pl.DataFrame(schema=schema)
    params = {"y": f"{period.year:04d}-01", "p": str(period)}
    summed = ("SELECT account_id, CAST(sum(kwh) AS BIGINT) AS ytd_kwh FROM bills "
              "WHERE period >= :y AND period < :p AND status <> 'cancelled'{member} "
              "GROUP BY account_id")
    if kept is None or accounts is None:
        every = read_frame(engine, summed.format(member=""), params, schema={"ytd_kwh": pl.Int64})
        return every if kept is None else pl.concat(
            [kept, every.join(kept, on="account_id", how="anti")], how="vertical_relaxed")
    rest = accounts.unique().to_frame("account_id").join(kept, on="account_id", how="anti")
    if rest.height == 0:
        return kept.cast(schema)  # type: ignore[arg-type]
    if rest.height <= 20_000:
        # few (accounts new this year, excepted last period, or whose year changed): their
        # bills through ix_bills_account
        with engine.connect() as conn:
            member, bound = any_of(conn, "account_id", "ids", rest["account_id"].sort().to_list())
        others = read_frame(engine, summed.format(member=f" AND {member}"), {**params, **bound},
                            schema={"ytd_kwh": pl.Int64})
    else:  # many (the first run after migration 0045): one pass over the year
        others = read_frame(engine, summed.format(member=""), params,
                            schema={"ytd_kwh": pl.Int64}).join(rest, on="account_id", how="semi")
    return pl.concat([kept.cast(schema), others.cast(schema)],  # type: ignore[arg-type]
                     how="vertical_relaxed")


def stale_year_to_date(conn: Connection, accounts: Sequence[str], after: Period) -> None:
    """Forget the year to date kept by the accounts' live bills of ``after``'s year for the
    periods after it (bills.ytd_kwh): an earlier bill of their year was just cancelled, imported
    or issued, so the figure they were rated with is no longer the year's. The next bill run sums
    the year for these accounts (:func:`year_to_date_kwh`)."""
    if not accounts:
        return
    member, bound = any_of(conn, "account_id", "ids", sorted(set(accounts)))
    conn.execute(text(
        f"UPDATE bills SET ytd_kwh = NULL WHERE {member} AND period > :p AND period <= :end "
        "AND status = 'issued' AND ytd_kwh IS NOT NULL"),
        {**bound, "p": str(after), "end": f"{after.year:04d}-12"})


def reads_between(engine: Engine, lo: datetime, hi: datetime) -> pl.DataFrame:
    sql = ("SELECT meter_id, register, read_at, value, source FROM register_reads "
           "WHERE read_at > :lo AND read_at <= :hi")
    fast = _sqlite_columns(engine, sql, {"lo": lo, "hi": hi}, _read_schema())
    if fast is not None:
        return fast
    return read_frame(
        engine,
        "SELECT meter_id, register, read_at, value, source FROM register_reads "
        "WHERE read_at > :lo AND read_at <= :hi",
        {"lo": lo, "hi": hi},
        instants=("read_at",),
        schema={"value": pl.Int64},
    )


def _for_ids(engine: Engine, sql: str, ids: list[str], params: dict[str, Any],
             empty: dict[str, Any], **kwargs: Any) -> pl.DataFrame:
    """Run ``sql`` (whose ``{ids}`` stands for an IN list) for the ids, 500 at a time."""

    frames = []
    for i in range(0, len(ids), 500):
        names = {f"m{j}": m for j, m in enumerate(ids[i : i + 500])}
        in_list = ", ".join(":" + k for k in names)
        frames.append(read_frame(engine, sql.replace("{ids}", in_list), {**params, **names},
                                 **kwargs))
    frames = [f for f in frames if f.height]
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame(schema=empty)


def _read_schema() -> dict[str, Any]:

    return {"meter_id": pl.String, "register": pl.String, "read_at": pl.Datetime("us", "UTC"),
            "value": pl.Int64, "source": pl.String}


def last_reads_before(engine: Engine, meter_ids: list[str], at: datetime) -> pl.DataFrame:
    """The latest read at or before ``at`` of each register of the given meters (fallback for
    meters whose previous read is older than the usual window)."""
    return _for_ids(
        engine,
        "SELECT r.meter_id, r.register, r.read_at, r.value, r.source FROM register_reads r "
        "JOIN (SELECT meter_id, register, max(read_at) AS at FROM register_reads "
        "WHERE read_at <= :at AND meter_id IN ({ids}) GROUP BY meter_id, register) x "
        "ON x.meter_id = r.meter_id AND x.register = r.register AND x.at = r.read_at",
        meter_ids, {"at": at}, _read_schema(), instants=("read_at",), schema={"value": pl.Int64})


#: where each meter's live bills stopped: the meter of a bill on one meter, and every meter of
#: a bill on several meters (``bill_meters``)
_METER_STOPS = (
    "(SELECT b.meter_id, b.read_to_at, b.period FROM bills b WHERE b.status = 'issued' "
    "AND b.meter_id IS NOT NULL AND b.read_to_at IS NOT NULL{where} "
    "UNION ALL SELECT m.meter_id, m.read_to_at, b.period FROM bill_meters m "
    "JOIN bills b ON b.bill_id = m.bill_id WHERE b.status = 'issued' "
    "AND m.read_to_at IS NOT NULL{where})")


@dataclass(frozen=True)
class PreviousPeriod:
    """What a bill run takes from the previous period's live bills, in one read of them."""

    #: meter_id, open_from: where each meter's bill stopped (起码 = 上期止码)
    opening: pl.DataFrame
    #: account_id, ytd_kwh: the year to date the bills keep, plus their own energy (empty when
    #: the period opens a year)
    ytd: pl.DataFrame


def previous_period(engine: Engine, period: Period) -> PreviousPeriod:
    """The previous period's live bills: where their meters stopped and the year to date they
    carry forward (:class:`PreviousPeriod`)."""
    prev = str(period.prev())
    bills = read_frame(
        engine,
        "SELECT account_id, meter_id, read_to_at, ytd_kwh + kwh AS ytd_kwh FROM bills "
        "WHERE period = :p AND status = 'issued'",
        {"p": prev}, instants=("read_to_at",),
        schema={"account_id": pl.String, "meter_id": pl.String,
                "read_to_at": pl.Datetime("us", "UTC"), "ytd_kwh": pl.Int64})
    several = read_frame(
        engine,
        "SELECT m.meter_id, m.read_to_at AS open_from FROM bill_meters m "
        "JOIN bills b ON b.bill_id = m.bill_id WHERE b.status = 'issued' "
        "AND m.read_to_at IS NOT NULL AND b.period = :p",
        {"p": prev}, instants=("open_from",),
        schema={"meter_id": pl.String, "open_from": pl.Datetime("us", "UTC")})
    opening = pl.concat([
        bills.filter(pl.col("meter_id").is_not_null() & pl.col("read_to_at").is_not_null())
        .select("meter_id", pl.col("read_to_at").alias("open_from")), several],
        how="vertical_relaxed")
    ytd = (bills.filter(pl.col("ytd_kwh").is_not_null()).select("account_id", "ytd_kwh")
           if period.month != 1 else pl.DataFrame(schema={"account_id": pl.String,
                                                          "ytd_kwh": pl.Int64}))
    return PreviousPeriod(opening, ytd)


def previous_closing(engine: Engine, period: Period, missing: list[str] | None = None,
                     *, within_year: bool = False) -> pl.DataFrame:
    """Where each meter's last live bill stopped (meter_id, open_from): from the previous period's
    bills; for the ``missing`` meters, from their latest live bill before ``period``; with
    ``within_year``, the latest live bill of every meter in the twelve periods before."""

    schema: dict[str, Any] = {"meter_id": pl.String, "open_from": pl.Datetime("us", "UTC")}
    if within_year:
        lo = period
        for _ in range(12):
            lo = lo.prev()
        stops = _METER_STOPS.format(where=" AND b.period >= :lo AND b.period < :p")
        return read_frame(
            engine,
            f"SELECT meter_id, max(read_to_at) AS open_from FROM {stops} s GROUP BY meter_id",
            {"lo": str(lo), "p": str(period)}, instants=("open_from",), schema=schema)
    if missing is None:
        stops = _METER_STOPS.format(where=" AND b.period = :p")
        return read_frame(
            engine, f"SELECT meter_id, read_to_at AS open_from FROM {stops} s",
            {"p": str(period.prev())}, instants=("open_from",), schema=schema)
    # bills have no index on the meter: the statement reads every live bill before the period
    # (eleven million rows by December) — once for all the meters, not once per 500 of them.
    # The membership test sits in each branch: outside the UNION, SQLite would not take it into
    # the branches and would join every multi-meter bill instead of using ix_bill_meters_meter
    with engine.connect() as conn:
        ids = sorted(set(missing))
        on_bill, bound = any_of(conn, "b.meter_id", "ids", ids)
        on_meters, _same = any_of(conn, "m.meter_id", "ids", ids)
    stops = ("(SELECT b.meter_id, b.read_to_at FROM bills b WHERE b.status = 'issued' "
             f"AND b.read_to_at IS NOT NULL AND b.period < :p AND {on_bill} "
             "UNION ALL SELECT m.meter_id, m.read_to_at FROM bill_meters m "
             "JOIN bills b ON b.bill_id = m.bill_id WHERE b.status = 'issued' "
             f"AND m.read_to_at IS NOT NULL AND b.period < :p AND {on_meters})")
    return read_frame(
        engine, f"SELECT meter_id, max(read_to_at) AS open_from FROM {stops} s GROUP BY meter_id",
        {"p": str(period), **bound}, instants=("open_from",), schema=schema)


def later_bill_starts(engine: Engine, period: Period) -> pl.DataFrame:
    """Accounts with a live bill for a later period, and the earliest opening read instant among
    those bills (account_id, later_from): billing ``period`` again must not overlap them."""

    return read_frame(
        engine,
        "SELECT account_id, min(read_from_at) AS later_from FROM bills WHERE period > :p "
        "AND status = 'issued' GROUP BY account_id",
        {"p": str(period)}, instants=("later_from",),
        schema={"account_id": pl.String, "later_from": pl.Datetime("us", "UTC")})


def reads_of_meters(engine: Engine, meter_ids: list[str], lo: datetime,
                    hi: datetime) -> pl.DataFrame:
    """Every read of the given meters in [lo, hi] (few meters: the ones whose last bill stopped
    before the usual read window)."""
    return _for_ids(
        engine,
        "SELECT meter_id, register, read_at, value, source FROM register_reads "
        "WHERE read_at >= :lo AND read_at <= :hi AND meter_id IN ({ids})",
        meter_ids, {"lo": lo, "hi": hi}, _read_schema(), instants=("read_at",),
        schema={"value": pl.Int64})


def open_exceptions(engine: Engine, period: Period | None = None) -> pl.DataFrame:
    """Accounts still without a live bill for a period in which a run could not bill them:
    period, account_id, reason, detail, run_id — the latest run's reason, one row per account and
    period (an account that failed in two runs is one open exception, not two)."""
    where, params = ("e.period = :p AND", {"p": str(period)}) if period else ("", {})
    frame = read_frame(
        engine,
        "SELECT e.period, e.account_id, e.reason, e.detail, e.run_id FROM bill_exceptions e "
        f"WHERE {where} NOT EXISTS (SELECT 1 FROM bills b WHERE b.account_id = e.account_id "
        "AND b.period = e.period AND b.status <> 'cancelled') "
        "ORDER BY e.period, e.account_id, e.run_id", params)
    return frame.unique(["period", "account_id"], keep="last", maintain_order=True)


def period_totals(engine: Engine) -> pl.DataFrame:
    """Per billed period, newest first: live bills, kWh, amount (fen), bills on estimated reads."""

    return read_frame(
        engine,
        "SELECT period, count(*) AS bills, CAST(sum(kwh) AS BIGINT) AS kwh, "
        "CAST(sum(amount) AS BIGINT) AS amount, "
        "CAST(sum(CASE WHEN estimated THEN 1 ELSE 0 END) AS BIGINT) AS estimated "
        "FROM bills WHERE status = 'issued' GROUP BY period ORDER BY period DESC",
        schema={"bills": pl.Int64, "kwh": pl.Int64, "amount": pl.Int64, "estimated": pl.Int64})


def last_completed_run(conn: Connection) -> tuple[str, str] | None:
    """(period, finished_at as text) of the bill run that completed last (None: none has)."""
    row = conn.execute(text("SELECT period, finished_at FROM bill_runs WHERE status = 'completed' "
                            "AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 1")).first()
    return None if row is None else (str(row[0]), str(row[1]))


def latest_period(conn: Connection) -> str | None:
    """The newest period with a bill (an index look-up on ``ix_bills_period``)."""
    got = conn.execute(text("SELECT MAX(period) FROM bills")).scalar()
    return None if got is None else str(got)


def issued_bills_of_mode(engine: Engine, payment_mode: str, since_period: str) -> pl.DataFrame:
    """Live bills of ``payment_mode`` customers from ``since_period`` on: account_id, period,
    kwh, read_to_at."""
    # customers first, then their bills (CROSS JOIN keeps that order in SQLite): the other way
    # round reads every customer's bills since ``since_period``
    sql = ("SELECT b.account_id, b.period, b.kwh, b.read_to_at FROM customers c "
           "CROSS JOIN bills b WHERE b.customer_id = c.customer_id AND c.payment_mode = :m "
           "AND b.status = 'issued' AND b.period >= :p")
    fast = _sqlite_columns(engine, sql, {"p": since_period, "m": payment_mode}, {
        "account_id": pl.String, "period": pl.String, "kwh": pl.Int64,
        "read_to_at": pl.Datetime("us", "UTC")})
    if fast is not None:
        return fast
    return read_frame(
        engine, sql, {"p": since_period, "m": payment_mode}, instants=("read_to_at",),
        schema={"account_id": pl.String, "period": pl.String, "kwh": pl.Int64})


#: the energy lines of the time-of-use periods (the rater's codes, ``energy_{period}``)
TOU_LINE_CODES = ("energy_sharp", "energy_peak", "energy_flat", "energy_valley")


def tou_energy(engine: Engine, since_period: str) -> pl.DataFrame:
    """Live bills' time-of-use energy from ``since_period`` on, one row per account and period
    with time-of-use lines: account_id, period, valley (the valley line's quantity), kwh (the
    sum of the time-of-use lines' quantities) — 0.01 kWh, every meter of the bill together."""
    schema = {"account_id": pl.String, "period": pl.String, "valley": pl.Int64, "kwh": pl.Int64}
    codes = ", ".join(f"'{c}'" for c in TOU_LINE_CODES)
    # sums cast back to BIGINT: PostgreSQL sums a bigint as numeric
    sql = ("SELECT b.account_id, b.period, CAST(SUM(CASE WHEN l.code = 'energy_valley' "
           "THEN l.quantity ELSE 0 END) AS BIGINT) AS valley, "
           "CAST(SUM(l.quantity) AS BIGINT) AS kwh FROM bills b "
           "JOIN bill_lines l ON l.bill_id = b.bill_id "
           f"WHERE b.status = 'issued' AND b.period >= :p AND l.code IN ({codes}) "
           "GROUP BY b.account_id, b.period ORDER BY b.account_id, b.period")
    params = {"p": since_period}
    fast = _sqlite_columns(engine, sql, params, schema)
    if fast is not None:
        return fast
    return read_frame(engine, sql, params, schema=schema)


def bills_between(engine: Engine, first: str, last: str) -> pl.DataFrame:
    """Every bill of the periods ``first``..``last`` (cancelled ones too, with their status):
    bill_id, account_id, customer_id, period, issued_on, due_on, amount, kwh, status, estimated,
    read_from_at, read_to_at."""
    schema = {"bill_id": pl.String, "account_id": pl.String, "customer_id": pl.String,
              "period": pl.String, "issued_on": pl.Date, "due_on": pl.Date, "amount": pl.Int64,
              "kwh": pl.Int64, "status": pl.String, "estimated": pl.Boolean,
              "read_from_at": pl.Datetime("us", "UTC"), "read_to_at": pl.Datetime("us", "UTC")}
    sql = ("SELECT bill_id, account_id, customer_id, period, issued_on, due_on, amount, kwh, "
           "status, estimated, read_from_at, read_to_at FROM bills "
           "WHERE period BETWEEN :a AND :z ORDER BY period, bill_id")
    params = {"a": first, "z": last}
    fast = _sqlite_columns(engine, sql, params, schema)
    if fast is not None:
        return fast
    return read_frame(engine, sql, params, dates=("issued_on", "due_on"),
                      instants=("read_from_at", "read_to_at"), schema=schema)


def period_bills_of(engine: Engine, period: str, account_ids: list[str],
                    bill_ids: list[str]) -> pl.DataFrame:
    """:func:`bills_between`'s columns for the bills of ``period`` whose account is one of
    ``account_ids`` or whose id is one of ``bill_ids``."""
    from dianfei.db.lists import any_of

    schema = {"bill_id": pl.String, "account_id": pl.String, "customer_id": pl.String,
              "period": pl.String, "issued_on": pl.Date, "due_on": pl.Date, "amount": pl.Int64,
              "kwh": pl.Int64, "status": pl.String, "estimated": pl.Boolean,
              "read_from_at": pl.Datetime("us", "UTC"), "read_to_at": pl.Datetime("us", "UTC")}
    with engine.connect() as conn:
        by_account, p1 = any_of(conn, "account_id", "accounts", sorted(set(account_ids)))
        by_id, p2 = any_of(conn, "bill_id", "ids", sorted(set(bill_ids)))
        return read_frame(
            conn, "SELECT bill_id, account_id, customer_id, period, issued_on, due_on, amount, "
            "kwh, status, estimated, read_from_at, read_to_at FROM bills WHERE period = :p "
            f"AND ({by_account} OR {by_id}) ORDER BY bill_id", {"p": period, **p1, **p2},
            dates=("issued_on", "due_on"), instants=("read_from_at", "read_to_at"),
            schema=schema)


# -- bill documents ------------------------------------------------------------------------------


def period_kwh(engine: Engine, period: Period) -> pl.DataFrame:
    """account_id, kwh (0.01 kWh) of every live bill of the period (the peer groups' data)."""
    return read_frame(engine, "SELECT account_id, kwh FROM bills WHERE period = :p "
                      "AND status <> 'cancelled'", {"p": str(period)},
                      schema={"account_id": pl.String, "kwh": pl.Int64})


def document_bills(conn: Connection, period: Period, accounts: Sequence[str],
                   include_cancelled: bool) -> dict[str, dict[str, Any]]:
    """Per account its bill of the period: the live one, else (``include_cancelled``) the
    latest cancelled version."""
    member, params = any_of(conn, "account_id", "accts", sorted(set(accounts)))
    rows = conn.execute(text(
        f"SELECT * FROM bills WHERE period = :p AND {member} "
        "ORDER BY account_id, (status = 'issued') DESC, version DESC"),
        {"p": str(period), **params}).mappings().all()
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["account_id"] in out or (r["status"] == "cancelled" and not include_cancelled):
            continue
        out[r["account_id"]] = dict(r)
    return out


def document_lines(conn: Connection, bill_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    return _by_bill(conn, "SELECT * FROM bill_lines WHERE {member} ORDER BY bill_id, line_no",
                    bill_ids)


def document_meters(conn: Connection, bill_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    return _by_bill(conn, "SELECT * FROM bill_meters WHERE {member} ORDER BY bill_id, meter_id",
                    bill_ids)


def _by_bill(conn: Connection, sql: str, bill_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    member, params = any_of(conn, "bill_id", "bills", sorted(set(bill_ids)))
    out: dict[str, list[dict[str, Any]]] = {}
    for r in conn.execute(text(sql.format(member=member)), params).mappings():
        out.setdefault(r["bill_id"], []).append(dict(r))
    return out


def document_history(conn: Connection, period: Period, accounts: Sequence[str],
                     ) -> tuple[dict[str, list[dict[str, Any]]], set[str]]:
    """The 13 periods up to ``period`` (live bills, and those not yet replaced by a rebill):
    the usage chart, and this year's kWh before the bill for the tier position (as the bill
    run's year-to-date counts them); and the accounts with a live bill for a later period (one
    read: for the latest bill, the later periods hold nothing)."""
    first = period
    for _ in range(12):
        first = first.prev()
    start = min(first, Period(period.year, 1))
    member, params = any_of(conn, "account_id", "accts", sorted(set(accounts)))
    out: dict[str, list[dict[str, Any]]] = {}
    later: set[str] = set()
    for r in conn.execute(text(
            "SELECT account_id, period, kwh, amount, estimated FROM bills "
            f"WHERE period >= :a AND status <> 'cancelled' AND {member} "
            "ORDER BY account_id, period"),
            {"a": str(start), **params}).mappings():
        if r["period"] > str(period):
            later.add(str(r["account_id"]))
        else:
            out.setdefault(r["account_id"], []).append(dict(r))
    return out, later


_BILL_FACTS = ("SELECT bill_id, account_id, customer_id, period, issued_on, due_on, amount, kwh, "
               "status FROM bills WHERE {member}")


def bill_facts(conn: Connection, column: str, values: list[str]) -> pl.DataFrame:
    """bill_id, account_id, customer_id, period, issued_on, due_on, amount, kwh, status of the
    bills whose ``column`` (bill_id or account_id) is one of ``values`` (one list parameter)."""
    from dianfei.db.lists import any_of

    member, params = any_of(conn, column, "ids", sorted(set(values)))
    return read_frame(conn, _BILL_FACTS.format(member=member), params,
                      dates=("issued_on", "due_on"),
                      schema={"bill_id": pl.String, "account_id": pl.String,
                              "customer_id": pl.String, "period": pl.String,
                              "amount": pl.Int64, "kwh": pl.Int64, "status": pl.String})


def bill_history(engine: Engine) -> pl.DataFrame:
    """Every bill ever issued (cancelled ones too, with when): what the risk features read."""
    return read_frame(
        engine,
        "SELECT bill_id, account_id, customer_id, period, issued_on, due_on, amount, kwh, status, "
        "cancelled_at FROM bills",
        dates=("issued_on", "due_on"), instants=("cancelled_at",),
        schema={"bill_id": pl.String, "account_id": pl.String, "customer_id": pl.String,
                "period": pl.String, "amount": pl.Int64, "kwh": pl.Int64, "status": pl.String})
