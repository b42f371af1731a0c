"""Late payment fees (电费违约金) as a versioned rule, and their daily accrual.

The rule (《供电营业规则》1996 art. 98, ``late_fees.toml``): residential customers pay 1‰ of the
overdue principal per day; other customers 2‰ per day on the current year's arrears and 3‰ per
day on arrears carried across years; days = payment date − due date, never below zero; a total
under 1 yuan is charged as 1 yuan, but only when the bill is overdue at all.

How we compute it, and why:

- Everything is integer. A rate is held in parts per million (1‰ = 1000 ppm), so one day's fee on
  ``p`` fen is exactly ``p × ppm`` micro-fen; the total is rounded **once**, half-up to the fen
  (rounding day by day would over- or under-charge by up to half a fen per day).
- Cross-year split (an assumption, documented in docs/collections.md): arrears belong to the
  calendar year of their due date. Overdue days in that year are charged at the current-year rate;
  overdue days falling in any later calendar year are charged at the carried-over rate.
- Partial payments: the principal of a day is what was still owed at the start of that day, so a
  payment dated P still bears the fee for day P (days = P − due for the part it pays, exactly the
  one-shot formula) and the principal is lower from day P + 1.
- Daily accrual posts, as a new ledger entry, the difference between the correctly rounded
  cumulative fee through today and what is already posted for that bill. The sum of the daily
  entries therefore equals the one-shot formula on the same payment schedule (property-tested).
- Grace period (configurable, default 0): while days ≤ grace no fee is due; beyond it the fee is
  counted from the due date.
- A bill's whole fee follows the rule version in force on its due date.

This module imports only the standard library and ``dianfei.core`` so that ``dianfei late-fee``
answers in well under half a second; the columnar accrual step imports Polars when called.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dianfei.core.errors import ValidationError
from dianfei.core.money import div_round_half_up, parse_decimal, to_fen

if TYPE_CHECKING:
    import polars as pl

RULE_FILE = Path(__file__).with_name("late_fees.toml")
CUSTOMER_CLASSES = ("residential", "commercial", "industrial", "large_industry", "agricultural")
#: a rate per day in parts per million: 1‰ = 1000
PPM = 1_000_000


@dataclass(frozen=True)
class ClassRates:
    """Daily rates of one customer class, in ppm."""

    current_year: int
    carried_over: int


@dataclass(frozen=True)
class LateFeeRule:
    """One version of the late-fee rule, in force for bills due from ``effective_from``."""

    effective_from: date
    effective_to: date | None
    source: str
    grace_days: int
    minimum_fen: int
    rates: dict[str, ClassRates]

    def in_force_on(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day <= self.effective_to)

    def rates_for(self, customer_class: str) -> ClassRates:
        if customer_class not in CUSTOMER_CLASSES:
            raise ValidationError(f"customer class must be one of {', '.join(CUSTOMER_CLASSES)}, "
                                  f"got {customer_class!r}")
        return self.rates.get(customer_class) or self.rates["default"]


@dataclass(frozen=True)
class LateFee:
    """The fee on one amount paid on one date: what ``dianfei late-fee`` prints."""

    days: int
    #: of ``days``: those in the due date's calendar year, and those in later years
    current_days: int
    carried_days: int
    rates: ClassRates
    amount_fen: int

    @property
    def rate_per_day(self) -> str:
        """The daily rate as a decimal string ("0.001"). When the overdue days straddle a year
        end at two rates, the day-weighted mean rate (6 places, half-up)."""
        r = self.rates
        if self.carried_days == 0 or r.carried_over == r.current_year:
            return _rate_text(r.current_year)
        if self.current_days == 0:
            return _rate_text(r.carried_over)
        mean = Decimal(r.current_year * self.current_days + r.carried_over * self.carried_days) / (
            self.days * PPM)
        return str(mean.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP).normalize())

    def to_json(self) -> dict[str, Any]:
        from dianfei.core.money import fmt_yuan

        return {"days": self.days, "rate_per_day": self.rate_per_day,
                "amount": fmt_yuan(self.amount_fen)}


def _rate_text(ppm: int) -> str:
    return format((Decimal(ppm) / PPM).normalize(), "f")


def _date(value: Any, what: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValidationError(f"{what}: not a date YYYY-MM-DD: {value!r}") from None


def _rate_ppm(text: Any, what: str) -> int:
    value = parse_decimal(str(text), what, places=6, allow_negative=False)
    if value > Decimal("0.01"):
        raise ValidationError(f"{what}: {text} per day is above 1% — a rate is a fraction per day "
                              "(1‰ = \"0.001\")")
    return int(value * PPM)


def load_rules(path: Path | None = None) -> list[LateFeeRule]:
    """Load and validate the rule versions (sorted, not overlapping)."""
    path = path or RULE_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValidationError(f"late-fee rule file {path}: {exc}") from None
    out: list[LateFeeRule] = []
    for i, v in enumerate(data.get("version", [])):
        where = f"{path.name} version {i + 1}"
        rates: dict[str, ClassRates] = {}
        for cls, r in (v.get("rates") or {}).items():
            if cls != "default" and cls not in CUSTOMER_CLASSES:
                raise ValidationError(f"{where}: unknown customer class {cls!r}")
            rates[cls] = ClassRates(_rate_ppm(r["current_year"], f"{where} {cls}.current_year"),
                                    _rate_ppm(r["carried_over"], f"{where} {cls}.carried_over"))
        if "default" not in rates and set(CUSTOMER_CLASSES) - set(rates):
            raise ValidationError(f"{where}: rates for every class or a 'default' are required")
        if not v.get("source"):
            raise ValidationError(f"{where}: every rule version cites its source")
        grace = int(v.get("grace_days", 0))
        if not 0 <= grace <= 365:
            raise ValidationError(f"{where}: grace_days must be 0..365, got {grace}")
        minimum = parse_decimal(str(v.get("minimum", "0")), f"{where} minimum", places=2,
                                allow_negative=False)
        to = v.get("effective_to")
        out.append(LateFeeRule(_date(v["effective_from"], f"{where} effective_from"),
                               _date(to, f"{where} effective_to") if to else None,
                               str(v["source"]), grace, to_fen(minimum), rates))
    out.sort(key=lambda r: r.effective_from)
    for a, b in itertools.pairwise(out):
        if a.effective_to is None or a.effective_to >= b.effective_from:
            raise ValidationError(f"{path.name}: versions from {a.effective_from} and "
                                  f"{b.effective_from} overlap")
    if not out:
        raise ValidationError(f"{path.name}: no rule version")
    return out


_CACHE: dict[Path, list[LateFeeRule]] = {}


def rules(path: Path | None = None) -> list[LateFeeRule]:
    """The rule versions of ``path`` (default: the packaged file), loaded once."""
    key = (path or RULE_FILE).resolve()
    if key not in _CACHE:
        _CACHE[key] = load_rules(key)
    return _CACHE[key]


def rule_for(due_on: date, versions: list[LateFeeRule] | None = None) -> LateFeeRule:
    """The version that governs a bill due on ``due_on``."""
    for r in versions or rules():
        if r.in_force_on(due_on):
            return r
    raise ValidationError(f"no late-fee rule version is in force on {due_on}")


def split_days(due_on: date, upto: date) -> tuple[int, int]:
    """Overdue days through ``upto`` in the due date's year and in later years."""
    days = max(0, (upto - due_on).days)
    if days == 0:
        return 0, 0
    year_end = date(due_on.year, 12, 31)
    current = max(0, (min(upto, year_end) - due_on).days)
    return current, days - current


def raw_fee(rates: ClassRates, principal_fen: int, due_on: date, start: date, end: date) -> int:
    """Micro-fen of fee on ``principal_fen`` for the overdue days in (start, end]."""
    c1, k1 = split_days(due_on, max(start, due_on))
    c2, k2 = split_days(due_on, max(end, due_on))
    return principal_fen * (rates.current_year * (c2 - c1) + rates.carried_over * (k2 - k1))


def cumulative_fee(rule: LateFeeRule, days: int, raw: int) -> int:
    """The correctly rounded total in fen for ``raw`` micro-fen accrued over ``days`` days."""
    if days <= rule.grace_days or days <= 0 or raw <= 0:
        return 0
    return max(rule.minimum_fen, div_round_half_up(raw, PPM))


def late_fee(customer_class: str, principal_fen: int, due_on: date, paid_on: date,
             rule: LateFeeRule | None = None) -> LateFee:
    """The one-shot fee on ``principal_fen`` due on ``due_on`` and paid on ``paid_on``."""
    if principal_fen < 0:
        raise ValidationError(f"amount must not be negative, got {principal_fen} fen")
    rule = rule or rule_for(due_on)
    rates = rule.rates_for(customer_class)
    current, carried = split_days(due_on, paid_on)
    days = current + carried
    raw = raw_fee(rates, principal_fen, due_on, due_on, paid_on)
    return LateFee(days, current, carried, rates, cumulative_fee(rule, days, raw))


def accrue(rule: LateFeeRule, customer_class: str, due_on: date, through: date, day: date,
           open_principal: int, raw: int, posted: int) -> tuple[int, int]:
    """One accrual step from ``through`` (exclusive) to ``day`` (inclusive) with the principal
    owed at the start of those days → (new raw micro-fen, fen to post now, never negative)."""
    rates = rule.rates_for(customer_class)
    raw += raw_fee(rates, open_principal, due_on, through, day)
    days = max(0, (day - due_on).days)
    return raw, max(0, cumulative_fee(rule, days, raw) - posted)


def rate_columns(frame: pl.DataFrame, versions: list[LateFeeRule] | None = None) -> pl.DataFrame:
    """Add ``cur_ppm``, ``car_ppm``, ``grace``, ``min_fen`` to a frame with ``customer_class`` and
    ``due_on`` (the version in force on the due date; the class's rates or the default)."""
    import polars as pl

    versions = versions or rules()
    cur = car = grace = minimum = pl.lit(None, pl.Int64)
    for v in versions:
        in_force = pl.col("due_on") >= v.effective_from
        if v.effective_to is not None:
            in_force = in_force & (pl.col("due_on") <= v.effective_to)
        vc = pl.lit(v.rates["default"].current_year if "default" in v.rates else None, pl.Int64)
        vk = pl.lit(v.rates["default"].carried_over if "default" in v.rates else None, pl.Int64)
        for cls, r in v.rates.items():
            if cls == "default":
                continue
            vc = pl.when(pl.col("customer_class") == cls).then(pl.lit(r.current_year)).otherwise(vc)
            vk = pl.when(pl.col("customer_class") == cls).then(pl.lit(r.carried_over)).otherwise(vk)
        cur = pl.when(in_force).then(vc).otherwise(cur)
        car = pl.when(in_force).then(vk).otherwise(car)
        grace = pl.when(in_force).then(pl.lit(v.grace_days)).otherwise(grace)
        minimum = pl.when(in_force).then(pl.lit(v.minimum_fen)).otherwise(minimum)
    return frame.with_columns(cur.cast(pl.Int64).alias("cur_ppm"), car.cast(pl.Int64).alias("car_ppm"),
                              grace.cast(pl.Int64).alias("grace"),
                              minimum.cast(pl.Int64).alias("min_fen"))


def accrue_frame(frame: pl.DataFrame, day: date,
                 versions: list[LateFeeRule] | None = None) -> pl.DataFrame:
    """The columnar :func:`accrue`: one row per overdue bill with ``customer_class``, ``due_on``,
    ``through`` (last accrued day, or the due date), ``open_principal``, ``raw``, ``posted``.
    Adds ``new_raw``, ``cumulative`` and ``delta`` (fen to post now)."""
    import polars as pl

    f = rate_columns(frame, versions)
    year_end = pl.date(pl.col("due_on").dt.year(), 12, 31)

    def split(upto: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
        upto = pl.max_horizontal(upto, pl.col("due_on"))
        days = (upto - pl.col("due_on")).dt.total_days()
        current = (pl.min_horizontal(upto, year_end) - pl.col("due_on")).dt.total_days()
        return current, days - current

    c1, k1 = split(pl.col("through"))
    c2, k2 = split(pl.lit(day))
    days = pl.max_horizontal((pl.lit(day) - pl.col("due_on")).dt.total_days(), pl.lit(0))
    new_raw = pl.col("raw") + pl.col("open_principal") * (
        pl.col("cur_ppm") * (c2 - c1) + pl.col("car_ppm") * (k2 - k1))
    f = f.with_columns(new_raw.alias("new_raw"), days.alias("days"))
    rounded = (pl.col("new_raw") + PPM // 2) // PPM  # raw ≥ 0: half-up is floor(x + ½)
    cumulative = (pl.when((pl.col("days") <= pl.col("grace")) | (pl.col("days") <= 0)
                          | (pl.col("new_raw") <= 0)).then(pl.lit(0, pl.Int64))
                  .otherwise(pl.max_horizontal(rounded, pl.col("min_fen"))))
    return (f.with_columns(cumulative.alias("cumulative"))
            .with_columns(pl.max_horizontal(pl.col("cumulative") - pl.col("posted"), pl.lit(0))
                          .alias("delta"))
            .drop("cur_ppm", "car_ppm", "grace", "min_fen", "days"))
