"""Consumption and register reads of the synthetic utility.

A customer's consumption in a month is a closed-form function of (seed, period): base load ×
seasonal factor of its class × days in the month × a lognormal noise drawn from the stream
``("consumption", period index)``, changed by behaviour (vacant, tamper). The cumulative register
values at the end of a period are the opening values plus the increments of every month so far;
they are cached per ``Utility`` as checkpoints, so reading month 24 after month 23 costs one
month, and reading it first costs 24 cheap vectorised steps, with identical results either way.

Values are centi-units (0.01 kWh, kvarh, kW) of what the meter shows, before the multiplier;
cumulative registers wrap at 10**digits (kWh). Data faults are planted at small seeded rates:
see ``read_faults``.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time

import numpy as np
import polars as pl

from dianfei.core.clock import BUSINESS_TZ, Period
from dianfei.sim._rng import stream
from dianfei.sim.population import AGRI, COM, IND, LARGE, RES, TAMPER, VACANT, Utility

REGISTER_ORDER = ("total", "sharp", "peak", "flat", "valley", "kvarh", "demand_kw")
SOURCES = ("ami", "manual", "estimated")
FAULTS = ("missing", "regression", "estimated")

#: seasonal factor per class (rows as population.CLASSES) and calendar month (Jan..Dec)
SEASON = np.array(
    [
        [1.25, 1.15, 0.95, 0.85, 0.85, 1.00, 1.45, 1.50, 1.05, 0.85, 0.90, 1.20],
        [1.05, 0.85, 0.95, 0.95, 1.00, 1.10, 1.30, 1.35, 1.10, 0.95, 0.95, 1.05],
        [1.00, 0.75, 1.00, 1.02, 1.03, 1.05, 1.08, 1.08, 1.03, 1.02, 1.02, 1.00],
        [1.00, 0.80, 1.00, 1.02, 1.03, 1.05, 1.08, 1.08, 1.03, 1.02, 1.02, 1.00],
        [0.02, 0.02, 0.10, 0.80, 1.30, 1.60, 1.90, 1.80, 1.20, 0.35, 0.06, 0.02],
    ]
)
#: log-sd of the month-to-month noise, by class
NOISE_SIGMA = np.array([0.18, 0.12, 0.10, 0.08, 0.35])
#: day-of-week factor (Mon..Sun) by class, for daily_usage
WEEKDAY = np.array(
    [
        [0.97, 0.97, 0.97, 0.97, 1.00, 1.06, 1.06],
        [1.00, 1.00, 1.00, 1.00, 1.02, 1.05, 0.95],
        [1.05, 1.05, 1.05, 1.05, 1.05, 0.90, 0.75],
        [1.02, 1.02, 1.02, 1.02, 1.02, 0.96, 0.94],
        [1.00, 1.00, 1.00, 1.00, 1.00, 1.00, 1.00],
    ]
)
MISSING_RATE = 0.001
REGRESSION_RATE = 0.0002
ESTIMATED_RATE = 0.005
_CHECKPOINTS = 4

_CUMULATIVE = ("total", "peak2", "valley2", "sharp4", "peak4", "flat4", "valley4", "kvarh")
State = dict[str, np.ndarray]

assert (RES, COM, IND, LARGE, AGRI) == (0, 1, 2, 3, 4)


def _period_of(index: int) -> Period:
    return Period(index // 12, index % 12 + 1)


def _days(period: Period) -> int:
    return calendar.monthrange(period.year, period.month)[1]


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=BUSINESS_TZ).astimezone(UTC)


def _check(utility: Utility, period: Period) -> None:
    if period < utility.start:
        raise ValueError(f"period {period} is before the simulation start {utility.start}")


def _primary_kwh(utility: Utility, period: Period, *, true: bool = False) -> np.ndarray:
    """Recorded consumption (kWh, after the multiplier, float) of every customer in ``period``;
    ``true``: what they used, before any tampering (what a station meter sees). A night bypass
    is applied to the registers (``_increments``), not here."""
    m = utility.model
    seed, pidx = utility.seed, period.index()
    n = int(m.cls.shape[0])
    z = stream(seed, "consumption", pidx).standard_normal(size=n)
    sigma = NOISE_SIGMA[m.cls]
    kwh = (
        m.base_kwh * SEASON[m.cls, period.month - 1] * (_days(period) / 30.4375)
        * np.exp(sigma * z - sigma * sigma / 2)
    )
    vacant = stream(seed, "vacant_use", pidx).uniform(0.0, 3.0, size=n)
    kwh = np.where(m.behaviour == VACANT, vacant, kwh)
    if true:
        return kwh
    tampered = _tampered(utility, period) & ~m.night_bypass
    out: np.ndarray = np.where(tampered, kwh * m.tamper_keep, kwh)
    return out


def _tampered(utility: Utility, period: Period) -> np.ndarray:
    """Whose meter is tampered with during ``period`` (from their tamper_month on)."""
    m = utility.model
    rel = period.index() - utility.start.index()
    out: np.ndarray = (m.behaviour == TAMPER) & (m.tamper_month >= 0) & (rel >= m.tamper_month)
    return out


def _increments(utility: Utility, period: Period) -> State:
    """Register increments (centi, register scale) of ``period``, plus the month's demand."""
    cache = utility._cache.setdefault("increments", {})
    pidx = period.index()
    hit = cache.get(pidx)
    if hit is not None:
        return dict(hit)
    m = utility.model
    seed = utility.seed
    total = np.rint(_primary_kwh(utility, period) * 100 / m.multiplier).astype(np.int64)
    inc: State = {"total": total}

    # a night bypass: the valley register records only valley_keep of the valley energy, the
    # others record in full, and the total is what the registers add up to
    night = _tampered(utility, period) & m.night_bypass

    t2 = total[m.idx2]
    jitter = stream(seed, "tou2_split", pidx).normal(0.0, 0.03, size=t2.shape[0])
    share = np.clip(m.peak2_share + jitter, 0.2, 0.9)
    inc["peak2"] = np.floor(t2 * share).astype(np.int64)
    inc["valley2"] = t2 - inc["peak2"]
    n2 = night[m.idx2]
    if n2.any():
        inc["valley2"] = np.where(
            n2, np.floor(inc["valley2"] * m.valley_keep[m.idx2]).astype(np.int64), inc["valley2"])
        total[m.idx2] = inc["peak2"] + inc["valley2"]

    t4 = total[m.idx4]
    n4 = int(t4.shape[0])
    s = m.shares4 * np.exp(stream(seed, "tou4_split", pidx).normal(0.0, 0.05, size=(n4, 3)))
    ssum = s.sum(axis=1, keepdims=True)
    s = np.where(ssum > 0.95, s * 0.95 / ssum, s)
    parts = np.floor(t4[:, None] * s).astype(np.int64)
    inc["sharp4"], inc["peak4"], inc["flat4"] = parts[:, 0], parts[:, 1], parts[:, 2]
    inc["valley4"] = t4 - parts.sum(axis=1)
    night4 = night[m.idx4]
    if night4.any():
        inc["valley4"] = np.where(
            night4, np.floor(inc["valley4"] * m.valley_keep[m.idx4]).astype(np.int64),
            inc["valley4"])
        t4 = parts.sum(axis=1) + inc["valley4"]
        total[m.idx4] = t4
    pf = np.clip(m.pf + stream(seed, "power_factor_month", pidx).normal(0, 0.01, n4), 0.6, 0.995)
    inc["kvarh"] = np.rint(t4 * np.sqrt(1 - pf * pf) / pf).astype(np.int64)
    lf = stream(seed, "demand", pidx).uniform(0.35, 0.75, size=n4)
    inc["demand"] = np.rint(t4 / (_days(period) * 24 * lf)).astype(np.int64)

    if len(cache) >= 2:
        cache.pop(next(iter(cache)))
    cache[pidx] = inc
    return dict(inc)


def cumulative(utility: Utility, index: int) -> State:
    """Unwrapped cumulative registers at the end of the period with absolute ``index``."""
    m = utility.model
    first = utility.start.index()
    if index < first:
        return m.opening
    cache: dict[int, State] = utility._cache.setdefault("checkpoints", {})
    if index in cache:
        return cache[index]
    best = max((k for k in cache if k < index), default=first - 1)
    state = m.opening if best < first else cache[best]
    for k in range(best + 1, index + 1):
        inc = _increments(utility, _period_of(k))
        state = {key: state[key] + inc[key] for key in _CUMULATIVE}
    if len(cache) >= _CHECKPOINTS:
        cache.pop(min(cache))
    cache[index] = state
    return state


def _layout(utility: Utility) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row offsets per customer for the long reads frame (registers in REGISTER_ORDER)."""
    m = utility.model
    n = int(m.cls.shape[0])
    k = np.ones(n, dtype=np.int64)
    k[m.idx2] += 2
    k[m.idx4] += 6
    offsets = np.concatenate([[0], np.cumsum(k)[:-1]])
    cust = np.repeat(np.arange(n, dtype=np.int64), k)
    return offsets, cust, k


def _frame(
    utility: Utility, values: dict[str, np.ndarray], source: np.ndarray, read_at: datetime,
    keep: np.ndarray | None, with_demand: bool,
) -> pl.DataFrame:
    m = utility.model
    offsets, cust, _ = _layout(utility)
    rows = cust.shape[0]
    code = np.zeros(rows, dtype=np.int64)
    value = np.zeros(rows, dtype=np.int64)
    value[offsets] = values["total"]
    o2 = offsets[m.idx2]
    for j, (key, c) in enumerate((("peak2", 2), ("valley2", 4)), start=1):
        code[o2 + j] = c
        value[o2 + j] = values[key]
    o4 = offsets[m.idx4]
    regs4 = [("sharp4", 1), ("peak4", 2), ("flat4", 3), ("valley4", 4), ("kvarh", 5)]
    if with_demand:
        regs4.append(("demand", 6))
    for j, (key, c) in enumerate(regs4, start=1):
        code[o4 + j] = c
        value[o4 + j] = values[key]
    mask = np.ones(rows, dtype=bool)
    if not with_demand:
        mask[o4 + 6] = False
    if keep is not None:
        mask &= keep[cust]
    cust, code, value = cust[mask], code[mask], value[mask]
    return pl.DataFrame(
        {
            "meter_id": m.meter_ids.gather(cust),
            "read_at": pl.Series([read_at], dtype=pl.Datetime("us", "UTC")).gather(
                np.zeros(cust.shape[0], dtype=np.int64)
            ),
            "register": pl.Series(REGISTER_ORDER, dtype=pl.String).gather(code),
            "value": pl.Series(value, dtype=pl.Int64),
            "source": pl.Series(SOURCES, dtype=pl.String).gather(source[cust]),
        }
    )


def opening_reads(utility: Utility) -> pl.DataFrame:
    """Installation reads of every cumulative register at 00:00 Asia/Shanghai on ``start``'s
    first day (no demand_kw row: demand is not cumulative)."""
    m = utility.model
    shown = _wrap(utility, m.opening)
    source = m.manual.astype(np.int64)
    return _frame(utility, shown, source, _utc_midnight(utility.start.first_day), None, False)


def _wrap(utility: Utility, state: State) -> State:
    m = utility.model
    out: State = {}
    for key, v in state.items():
        if key == "demand":
            out[key] = v
            continue
        mod = m.modulus if key == "total" else m.modulus[m.idx2 if key.endswith("2") else m.idx4]
        out[key] = v % mod
    return out


def _faults(
    utility: Utility, period: Period
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(missing, regression, estimated, regression factor, estimate factor) per meter."""
    m = utility.model
    n = int(m.cls.shape[0])
    rng = stream(utility.seed, "read_faults", period.index())
    u = rng.random(size=n)
    g = rng.uniform(0.2, 0.9, size=n)
    f = rng.uniform(0.5, 1.0, size=n)
    prev = cumulative(utility, period.index() - 1)["total"] % m.modulus
    missing = u < MISSING_RATE
    cut = MISSING_RATE + REGRESSION_RATE
    regression = (u >= MISSING_RATE) & (u < cut) & (prev >= 100)
    estimated = (u >= cut) & (u < cut + ESTIMATED_RATE)
    return missing, regression, estimated, g, f


def monthly_reads(utility: Utility, period: Period) -> pl.DataFrame:
    """The closing (monthly frozen) reads of ``period``, at 00:00 Asia/Shanghai on the first day
    of the next month: meter_id, read_at (UTC), register, value (centi, wrapped), source."""
    _check(utility, period)
    m = utility.model
    prev = cumulative(utility, period.index() - 1)
    cur = cumulative(utility, period.index())
    inc = _increments(utility, period)
    missing, regression, estimated, g, f = _faults(utility, period)

    values: State = {}
    est_inc: State = {}
    for key in _CUMULATIVE:
        sub = None if key == "total" else (m.idx2 if key.endswith("2") else m.idx4)
        ff = f if sub is None else f[sub]
        est_inc[key] = np.floor(inc[key] * ff).astype(np.int64)
    est_inc["total"][m.idx2] = est_inc["peak2"] + est_inc["valley2"]
    est_inc["total"][m.idx4] = (
        est_inc["sharp4"] + est_inc["peak4"] + est_inc["flat4"] + est_inc["valley4"]
    )
    for key in _CUMULATIVE:
        sub_idx = None if key == "total" else (m.idx2 if key.endswith("2") else m.idx4)
        mod = m.modulus if sub_idx is None else m.modulus[sub_idx]
        est = estimated if sub_idx is None else estimated[sub_idx]
        reg = regression if sub_idx is None else regression[sub_idx]
        gg = g if sub_idx is None else g[sub_idx]
        v = cur[key] % mod
        shown_prev = prev[key] % mod
        v = np.where(est, (prev[key] + est_inc[key]) % mod, v)
        v = np.where(reg, np.floor(shown_prev * gg).astype(np.int64), v)
        values[key] = v
    values["demand"] = inc["demand"]
    source = m.manual.astype(np.int64)
    source[estimated] = 2
    return _frame(utility, values, source, _utc_midnight(period.end_date), ~missing, True)


def read_faults(utility: Utility, period: Period) -> pl.DataFrame:
    """The data faults planted in ``monthly_reads(period)``: meter_id, fault.

    ``missing``: no row at all for the meter this month. ``regression``: every cumulative
    register reads lower than last month's true value and it is not a rollover (a meter fault;
    the next month reads true again). ``estimated``: source "estimated", value between last
    month's and the true one (an under-estimate; TOU registers still sum to total).
    """
    _check(utility, period)
    missing, regression, estimated, _, _ = _faults(utility, period)
    code = np.full(missing.shape[0], -1, dtype=np.int64)
    code[missing], code[regression], code[estimated] = 0, 1, 2
    idx = np.flatnonzero(code >= 0)
    return pl.DataFrame(
        {
            "meter_id": utility.model.meter_ids.gather(idx),
            "fault": pl.Series(FAULTS, dtype=pl.String).gather(code[idx]),
        }
    )


def period_consumption(utility: Utility, period: Period) -> pl.DataFrame:
    """The true recorded consumption of ``period`` per meter: meter_id, kwh (centi-kWh after the
    multiplier) = true (close − open) × multiplier, whatever faults the reads carry."""
    _check(utility, period)
    m = utility.model
    inc = _increments(utility, period)["total"]
    return pl.DataFrame(
        {"meter_id": m.meter_ids, "kwh": pl.Series(inc * m.multiplier, dtype=pl.Int64)}
    )


def period_tou(utility: Utility, period: Period) -> pl.DataFrame:
    """The time-of-use energy of ``period`` per meter with time-of-use registers, as the bill
    lines carry it: meter_id, valley, kwh (centi-kWh after the multiplier; kwh = the sum of the
    time-of-use registers = the total). True increments, whatever faults the reads carry."""
    _check(utility, period)
    m = utility.model
    inc = _increments(utility, period)
    idx = np.concatenate([m.idx2, m.idx4])
    valley = np.concatenate([inc["valley2"], inc["valley4"]])
    order = np.argsort(idx, kind="stable")
    idx, valley = idx[order], valley[order]
    mult = m.multiplier[idx]
    return pl.DataFrame({
        "meter_id": m.meter_ids.gather(idx),
        "valley": pl.Series(valley * mult, dtype=pl.Int64),
        "kwh": pl.Series(inc["total"][idx] * mult, dtype=pl.Int64),
    })


#: a station's technical line loss (台区线损): its own level and the month's noise around it
STATION_LOSS = (0.03, 0.07)
STATION_LOSS_NOISE = 0.003


def station_supply(utility: Utility, period: Period) -> pl.DataFrame:
    """What each supply station's meter measured entering the station in ``period``:
    station_id, period (YYYY-MM), kwh (centi-kWh) = the true energy its customers used (before
    any tampering: a bypassed meter does not bypass the station meter) × (1 + the station's
    technical loss), the loss drawn per station in 3–7 % and per month ± 0.3 % (normal). So
    line loss = (supply − Σ customers' metered energy) / supply rises where meters under-record.
    Deterministic per (seed, station, period)."""
    _check(utility, period)
    m = utility.model
    n_st = utility.stations.height
    used = np.bincount(m.station, weights=_primary_kwh(utility, period, true=True) * 100,
                       minlength=n_st)
    level = stream(utility.seed, "station_loss").uniform(*STATION_LOSS, size=n_st)
    noise = stream(utility.seed, "station_loss", period.index()).normal(
        0.0, STATION_LOSS_NOISE, size=n_st)
    return pl.DataFrame({
        "station_id": utility.stations["station_id"],
        "period": pl.Series([str(period)] * n_st, dtype=pl.String),
        "kwh": pl.Series(np.rint(used * (1.0 + level + noise)), dtype=pl.Int64),
    })


def tamper_modes(utility: Utility) -> pl.DataFrame:
    """The planted tampering (ground truth for tests and benchmarks): customer_id, tamper_month
    (months after start), mode — ``scale`` (every register records tamper_keep, 30–60 %, of the
    usage) or ``night`` (a night bypass: the valley register records 5–35 % of the valley energy,
    the other registers in full) — one row per tamper customer."""
    m = utility.model
    idx = np.flatnonzero(m.behaviour == TAMPER)
    return pl.DataFrame({
        "customer_id": utility.customers["customer_id"].gather(idx),
        "tamper_month": pl.Series(m.tamper_month[idx], dtype=pl.Int32),
        "mode": pl.Series(np.where(m.night_bypass[idx], "night", "scale"), dtype=pl.String),
    })


def _day_weight(utility: Utility, period: Period, d: int) -> np.ndarray:
    """The day weights of day ``d`` of ``period`` (lognormal × day-of-week), per customer."""
    m = utility.model
    z = stream(utility.seed, "daily", period.index(), d).standard_normal(size=int(m.cls.shape[0]))
    wd = date(period.year, period.month, d).weekday()
    w: np.ndarray = np.exp(0.25 * z) * WEEKDAY[m.cls, wd]
    return w


def _through(utility: Utility, period: Period, upto: int) -> tuple[np.ndarray, np.ndarray]:
    """(the month's total day weight, the weight of days 1..``upto``) per customer. The running
    sum is cached, so consecutive days cost O(1); the first day asked in a month costs one pass
    over the month's weights. A few earlier positions (and months' totals) are kept too: the
    demo asks for yesterday's registers (a span cut then) after today's reads, which would
    otherwise start the month's pass over from its first day every day."""
    pidx = period.index()
    n = int(utility.model.cls.shape[0])
    totals: dict[int, np.ndarray] = utility._cache.setdefault("daily_totals", {})
    marks: dict[tuple[int, int], np.ndarray] = utility._cache.setdefault("daily_marks", {})
    cache = utility._cache.get("daily")
    if cache is not None:  # the cursor daily_usage or an earlier call left
        totals.setdefault(cache[0], cache[1])
        marks[(cache[0], cache[2])] = cache[3]
    s_all = totals.get(pidx)
    if s_all is None:
        s_all = np.zeros(n)
        for d in range(1, _days(period) + 1):
            s_all = s_all + _day_weight(utility, period, d)
        totals[pidx] = s_all
    # the nearest kept position at or before ``upto`` (day 0: nothing summed yet)
    last_d = max((d for (p, d) in marks if p == pidx and d <= upto), default=0)
    running = marks.get((pidx, last_d), np.zeros(n))
    for d in range(last_d + 1, upto + 1):
        running = running + _day_weight(utility, period, d)
    marks[(pidx, upto)] = running
    # bounded: a few positions of a few months (the arrays are one float per customer)
    for mark in list(marks)[:-_KEPT_MARKS]:
        del marks[mark]
    for month in list(totals)[:-_KEPT_MARKS]:
        del totals[month]
    utility._cache["daily"] = (pidx, s_all, upto, running)
    return s_all, running


#: positions of the month's running day weight (and months' totals) :func:`_through` keeps
_KEPT_MARKS = 4


def daily_usage(utility: Utility, day: date) -> pl.DataFrame:
    """Consumption on business day ``day``: meter_id, kwh (centi-kWh after the multiplier).

    The month's true register increment is split over its days with seeded day weights (and a
    day-of-week pattern per class) in integers, so the days of a month sum exactly to
    ``period_consumption`` (= true (close − open) × multiplier of that month's reads).
    """
    period = Period(day.year, day.month)
    _check(utility, period)
    m = utility.model
    total = _increments(utility, period)["total"]
    s_all, before = _through(utility, period, day.day - 1)
    through = before + _day_weight(utility, period, day.day)
    lo = np.floor(total * (before / s_all)).astype(np.int64)
    hi = total if day.day == _days(period) else np.floor(total * (through / s_all)).astype(np.int64)
    hi = np.minimum(np.maximum(hi, lo), total)
    utility._cache["daily"] = (period.index(), s_all, day.day, through)
    return pl.DataFrame(
        {"meter_id": m.meter_ids, "kwh": pl.Series((hi - lo) * m.multiplier, dtype=pl.Int64)}
    )


def prepaid_index(utility: Utility) -> np.ndarray:
    """Row numbers (= customer = meter index) of the prepaid customers, ascending."""
    idx = utility._cache.get("prepaid_index")
    if idx is None:
        idx = np.flatnonzero((utility.customers["payment_mode"] == "prepaid").to_numpy())
        utility._cache["prepaid_index"] = idx
    out: np.ndarray = idx
    return out


def registers_at(utility: Utility, day: date, idx: np.ndarray) -> tuple[State, np.ndarray]:
    """True unwrapped total / peak2 / valley2 registers at 00:00 of ``day`` (2nd day of a month
    or later) of the customers ``idx``, and which of them are TOU (total,peak,valley) meters."""
    m = utility.model
    period = Period(day.year, day.month)
    prev = cumulative(utility, period.index() - 1)
    inc = _increments(utility, period)
    s_all, before = _through(utility, period, day.day - 1)
    frac = before[idx] / s_all[idx]
    # the same split as daily_usage: the register has moved by floor(increment × fraction)
    total = prev["total"][idx] + np.floor(inc["total"][idx] * frac).astype(np.int64)
    pos2 = np.searchsorted(m.idx2, idx)
    is2 = (pos2 < m.idx2.shape[0]) & (m.idx2[np.minimum(pos2, m.idx2.shape[0] - 1)] == idx)
    p2 = pos2[is2]
    f2 = frac[is2]
    peak = prev["peak2"][p2] + np.floor(inc["peak2"][p2] * f2).astype(np.int64)
    valley = prev["valley2"][p2] + np.floor(inc["valley2"][p2] * f2).astype(np.int64)
    # a TOU meter's total is the sum of its registers (within 0.01 kWh of the split above), so
    # every register is monotone and they add up exactly every day
    total[is2] = peak + valley
    return {"total": total, "peak2": peak, "valley2": valley}, is2


#: the cumulative registers besides the total, by meter kind: (state key, register name)
_TOU2 = (("peak2", "peak"), ("valley2", "valley"))
_TOU4 = (("sharp4", "sharp"), ("peak4", "peak"), ("flat4", "flat"), ("valley4", "valley"))


def registers_on(utility: Utility, day: date, idx: np.ndarray) -> pl.DataFrame:
    """The true, unwrapped cumulative registers at 00:00 Asia/Shanghai on ``day`` of the
    customers (= meters) ``idx`` (row numbers, ascending): ``cust`` (the row number),
    ``register`` (``REGISTER_ORDER`` names; no demand_kw, which is not cumulative), ``value``
    (centi). On the 1st of a month they are the month-end values that :func:`monthly_reads`
    shows before its planted faults; on another day the month's increment × the day-weight
    fraction of the days before it (the split of :func:`daily_usage`), each register floored, a
    time-of-use meter's total the sum of its registers (as :func:`registers_at`) — so every
    register is monotone from day to day and across month ends."""
    m = utility.model
    period = Period(day.year, day.month)
    if day != utility.start.first_day:
        _check(utility, period)
    prev = cumulative(utility, period.index() - 1)
    frac: np.ndarray | None = None
    if day.day != 1:
        inc = _increments(utility, period)
        s_all, before = _through(utility, period, day.day - 1)
        frac = before / s_all

    def at(key: str, pos: np.ndarray, cust: np.ndarray) -> np.ndarray:
        base: np.ndarray = prev[key][pos]
        if frac is None:
            return base
        moved: np.ndarray = base + np.floor(inc[key][pos] * frac[cust]).astype(np.int64)
        return moved

    idx = np.asarray(idx, dtype=np.int64)
    total = at("total", idx, idx)
    custs, codes, values = [idx], [np.zeros(idx.shape[0], dtype=np.int64)], [total]
    for sub, table in ((m.idx2, _TOU2), (m.idx4, _TOU4)):
        if sub.shape[0] == 0:
            continue
        pos = np.searchsorted(sub, idx)
        inside = (pos < sub.shape[0]) & (sub[np.minimum(pos, sub.shape[0] - 1)] == idx)
        p, c = pos[inside], idx[inside]
        parts = np.zeros(c.shape[0], dtype=np.int64)
        for key, name in table:
            v = at(key, p, c)
            parts = parts + v
            custs.append(c)
            codes.append(np.full(c.shape[0], REGISTER_ORDER.index(name), dtype=np.int64))
            values.append(v)
        if sub is m.idx4:
            custs.append(c)
            codes.append(np.full(c.shape[0], REGISTER_ORDER.index("kvarh"), dtype=np.int64))
            values.append(at("kvarh", p, c))
        if frac is not None:
            total[inside] = parts
    return pl.DataFrame({
        "cust": pl.Series(np.concatenate(custs), dtype=pl.Int64),
        "register": pl.Series(REGISTER_ORDER, dtype=pl.String).gather(np.concatenate(codes)),
        "value": pl.Series(np.concatenate(values), dtype=pl.Int64)})


def daily_reads(utility: Utility, day: date) -> pl.DataFrame:
    """The daily frozen reads (日冻结) of the prepaid customers' meters at 00:00 Asia/Shanghai on
    ``day``: meter_id, read_at (UTC), register (total; TOU meters also peak and valley), value
    (centi, wrapped), source (``ami``), one row per meter and register.

    On the 1st of a month the daily read is the monthly frozen read (``monthly_reads`` of the
    month before, with its planted faults; the opening reads on ``start``'s first day). Other
    days read true: the registers have moved by the month's increment × the day-weight fraction
    of the days before ``day`` (the split of ``daily_usage``), so one day's total increment ×
    multiplier is ``daily_usage`` of the day before. Monotone within a month.
    """
    idx = prepaid_index(utility)
    m = utility.model
    if day.day == 1:
        prev = Period(day.year, day.month).prev()
        if prev < utility.start and day != utility.start.first_day:
            _check(utility, prev)
        frame = opening_reads(utility) if prev < utility.start else monthly_reads(utility, prev)
        return frame.filter(pl.col("meter_id").is_in(m.meter_ids.gather(idx).implode())
                            & (pl.col("register") != "demand_kw"))
    _check(utility, Period(day.year, day.month))
    regs, is2 = registers_at(utility, day, idx)
    k = np.where(is2, 3, 1)
    offsets = np.concatenate([[0], np.cumsum(k)[:-1]]).astype(np.int64)
    rows = int(k.sum())
    code = np.zeros(rows, dtype=np.int64)
    value = np.zeros(rows, dtype=np.int64)
    value[offsets] = regs["total"] % m.modulus[idx]
    o2 = offsets[is2]
    mod2 = m.modulus[idx][is2]
    code[o2 + 1], value[o2 + 1] = REGISTER_ORDER.index("peak"), regs["peak2"] % mod2
    code[o2 + 2], value[o2 + 2] = REGISTER_ORDER.index("valley"), regs["valley2"] % mod2
    cust = np.repeat(idx, k)
    return pl.DataFrame(
        {
            "meter_id": m.meter_ids.gather(cust),
            "read_at": pl.Series([_utc_midnight(day)], dtype=pl.Datetime("us", "UTC")).gather(
                np.zeros(rows, dtype=np.int64)
            ),
            "register": pl.Series(REGISTER_ORDER, dtype=pl.String).gather(code),
            "value": pl.Series(value, dtype=pl.Int64),
            "source": pl.Series(["ami"], dtype=pl.String).gather(np.zeros(rows, dtype=np.int64)),
        }
    )
