"""Customer segments (客户分类管理) by transparent rules kept as data (``segments.toml``).

``payment_facts`` turns bills and their payments into per-account lateness figures;
``assign`` applies the ordered rules to a frame of facts and returns each account's segment and
the rule that put it there. Pure Polars: the same on the synthetic county and on a database
(``risk.service.segments``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from dianfei.core.errors import ValidationError

if TYPE_CHECKING:
    import polars as pl

RULES_FILE = Path(__file__).with_name("segments.toml")
SEGMENTS = ("suspected_theft", "vacant", "strategic", "hardship", "chronic", "occasionally_late",
            "on_time")
#: the columns a rule may name (docs/risk-insight.md)
COLUMNS = ("theft_score", "months_low", "usual_kwh", "kwh_percentile", "customer_class",
           "low_income", "protected", "bills_12m", "late_12m", "late_recent", "late_before",
           "overdue_amount", "days_overdue")
#: the columns of status that protects a customer, and the segments they may lead to
PROTECTIVE = ("low_income", "protected")
GENTLE = ("hardship",)
#: the segment of an account no rule but the default holds for — with no history at all (no
#: bills, no consumption, nothing late) and nothing overdue (docs/risk-insight.md)
DEFAULT = SEGMENTS[-1]
_CONDITION = re.compile(r"^\s*([a-z_0-9]+)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: float | bool | str

    def expr(self) -> pl.Expr:
        import polars as pl

        c, v = pl.col(self.column), pl.lit(self.value)
        ops = {">=": c >= v, "<=": c <= v, ">": c > v, "<": c < v, "==": c == v, "!=": c != v}
        return ops[self.op].fill_null(False)

    def __str__(self) -> str:
        v = self.value
        if isinstance(v, bool):
            text = str(v).lower()
        elif isinstance(v, float) and v.is_integer():
            text = str(int(v))
        else:
            text = str(v)
        return f"{self.column} {self.op} {text}"


@dataclass(frozen=True)
class Rule:
    segment: str
    label: str
    all: tuple[Condition, ...]
    any: tuple[Condition, ...]

    def expr(self) -> pl.Expr:
        import polars as pl

        e = pl.lit(True)
        for c in self.all:
            e = e & c.expr()
        if self.any:
            alt = pl.lit(False)
            for c in self.any:
                alt = alt | c.expr()
            e = e & alt
        return e

    def why(self) -> str:
        parts = [str(c) for c in self.all]
        if self.any:
            parts.append(" or ".join(str(c) for c in self.any))
        return " and ".join(parts) or "no other rule matched"


def _condition(text: str, where: str) -> Condition:
    m = _CONDITION.match(text)
    if not m:
        raise ValidationError(f"condition {text!r} is not '<column> <op> <value>'", where=where)
    column, op, raw = m.groups()
    if column not in COLUMNS:
        raise ValidationError(f"unknown column {column!r} (one of {', '.join(COLUMNS)})",
                              where=where)
    value: float | bool | str
    if raw in ("true", "false"):
        value = raw == "true"
    else:
        try:
            value = float(raw)
        except ValueError:
            value = raw
    return Condition(column, op, value)


def load_rules(path: Path | None = None) -> tuple[Rule, ...]:
    """The ordered rules of ``path`` (default: the packaged segments.toml), checked."""
    file = path or RULES_FILE
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValidationError(f"cannot read segment rules: {exc}", where=str(file)) from None
    rules = []
    for i, item in enumerate(data.get("segment", []), start=1):
        where = f"{file.name} segment #{i}"
        name = item.get("name")
        if name not in SEGMENTS:
            raise ValidationError(f"segment name must be one of {', '.join(SEGMENTS)}, got "
                                  f"{name!r}", where=where)
        rule = Rule(name, str(item.get("label", name)),
                    tuple(_condition(t, where) for t in item.get("all", [])),
                    tuple(_condition(t, where) for t in item.get("any", [])))
        # the law (issue 10, item 10): low-income and protected status are never a reason to
        # escalate — they may only lead to the gentler segment, which the ladders dun softly
        named = {c.column for c in (*rule.all, *rule.any)} & set(PROTECTIVE)
        if named and name not in GENTLE:
            raise ValidationError(f"segment {name!r} names {', '.join(sorted(named))}: low-income "
                                  f"and protected status may only lead to {', '.join(GENTLE)}",
                                  where=where)
        rules.append(rule)
    if not rules or rules[-1].all or rules[-1].any:
        raise ValidationError("the last segment must have no conditions (the default)",
                              where=str(file))
    return tuple(rules)


def assign(facts: pl.DataFrame, rules: tuple[Rule, ...] | None = None) -> pl.DataFrame:
    """account_id, segment, label, why — the first rule that holds for each account. Missing
    columns and nulls count as 'not known' (a condition on them does not hold)."""
    import polars as pl

    rules = rules or load_rules()
    f = facts
    for col in COLUMNS:
        if col not in f.columns:
            f = f.with_columns(pl.lit(None).alias(col))
    seg = pl.lit(None, dtype=pl.String)
    label = pl.lit(None, dtype=pl.String)
    why = pl.lit(None, dtype=pl.String)
    for r in reversed(rules):  # the first rule wins: build the when-chain from the last
        hit = r.expr()
        seg = pl.when(hit).then(pl.lit(r.segment)).otherwise(seg)
        label = pl.when(hit).then(pl.lit(r.label)).otherwise(label)
        why = pl.when(hit).then(pl.lit(r.why())).otherwise(why)
    return f.select("account_id", seg.alias("segment"), label.alias("label"), why.alias("why"))


def payment_facts(bills: pl.DataFrame, paid: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Lateness per account as of ``as_of``, from bills (account_id, bill_id, amount fen,
    due_on) and when each was paid in full (bill_id, paid_in_full_on; absent = not yet):
    bills_12m, late_12m, late_recent, late_before, avg_days_late (of the late bills since
    paid), overdue_amount, days_overdue. Only bills
    due before ``as_of`` count; a payment after ``as_of`` is not known yet (no look-ahead)."""
    import polars as pl

    b = (bills.filter((pl.col("due_on") < as_of) & (pl.col("due_on") >= as_of - timedelta(days=365)))
         .join(paid.select("bill_id", "paid_in_full_on"), on="bill_id", how="left")
         .with_columns(pl.when(pl.col("paid_in_full_on") <= as_of)
                       .then(pl.col("paid_in_full_on")).otherwise(None).alias("paid_on")))
    late = (pl.col("paid_on") > pl.col("due_on")) | pl.col("paid_on").is_null()
    unpaid = pl.col("paid_on").is_null() & (pl.col("amount") > 0)
    recent = pl.col("due_on") >= as_of - timedelta(days=92)
    real = pl.col("amount") > 0
    return b.group_by("account_id").agg(
        real.sum().cast(pl.Int32).alias("bills_12m"),
        (late & real).sum().cast(pl.Int32).alias("late_12m"),
        (late & real & recent).sum().cast(pl.Int32).alias("late_recent"),
        (late & real & ~recent).sum().cast(pl.Int32).alias("late_before"),
        (pl.col("paid_on") - pl.col("due_on")).dt.total_days().filter(late & real & ~unpaid)
        .mean().fill_null(0.0).alias("avg_days_late"),
        pl.col("amount").filter(unpaid).sum().cast(pl.Int64).alias("overdue_amount"),
        (pl.lit(as_of) - pl.col("due_on").filter(unpaid).min()).dt.total_days()
        .fill_null(0).cast(pl.Int32).alias("days_overdue"))


def segment_facts(accounts: pl.DataFrame, payments: pl.DataFrame,
                  theft: pl.DataFrame, history: pl.DataFrame) -> pl.DataFrame:
    """The facts the rules read, one row per account of ``accounts`` (account_id,
    customer_class, low_income, protected): + payment_facts, + theft (account_id, score,
    months_low), + usual_kwh and kwh_percentile from ``history`` (the last 12 months given)."""
    import polars as pl

    usage = usual_consumption(history).drop("bills_12m").join(
        theft.select("account_id", pl.col("score").alias("theft_score"), "months_low"),
        on="account_id", how="full", coalesce=True)
    return facts_with_usage(accounts, payments, usage)


def facts_with_usage(accounts: pl.DataFrame, payments: pl.DataFrame,
                     usage: pl.DataFrame) -> pl.DataFrame:
    """:func:`segment_facts` with the consumption facts given as they are kept (``usage``:
    account_id, theft_score, months_low, usual_kwh, kwh_percentile), e.g. the stored file of
    ``risk.service.segment_consumption_facts``; ``bills_12m`` comes from ``payments``."""
    import polars as pl

    return (accounts.select("account_id", "customer_class", "low_income", "protected")
            .join(payments, on="account_id", how="left")
            .join(usage.select("account_id", "theft_score", "months_low", "usual_kwh",
                               "kwh_percentile"), on="account_id", how="left")
            .with_columns(pl.col("bills_12m", "late_12m", "late_recent", "late_before",
                                 "overdue_amount", "days_overdue", "avg_days_late").fill_null(0)))


def usual_consumption(history: pl.DataFrame) -> pl.DataFrame:
    """account_id, usual_kwh (median of the last 12 bills given, 0.01 kWh), kwh_percentile (the
    account's rank among all accounts of ``history``, 0–1) and bills_12m (how many of the last
    12 periods of ``history`` the account was billed for) — from ``history`` (account_id,
    period, kwh) sorted by account and period."""
    import polars as pl

    last = history["period"].max() if history.height else None
    periods = sorted(set(history["period"].to_list()))[-12:] if last is not None else []
    return (history.group_by("account_id").agg(
        pl.col("kwh").tail(12).median().alias("usual_kwh"),
        pl.col("period").is_in(periods).sum().cast(pl.Int32).alias("bills_12m"))
        .with_columns((pl.col("usual_kwh").rank("average") / pl.len()).alias("kwh_percentile")))


#: the facts of the consumption history the daily snapshot takes from the month's stored file
CONSUMPTION_COLUMNS = ("theft_score", "months_low", "usual_kwh", "kwh_percentile", "bills_12m")
