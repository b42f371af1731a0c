"""Payment plan policy (分期缴费政策) as data (``plans.toml``) and the schedule arithmetic.

Pure functions, no database: which policy row applies (customer class and segment), whether a
proposed plan keeps to it (each refusal names the row, the rule and the limit), when a second
person must approve, and a policy-conforming schedule for an amount. Amounts are integer fen;
the instalments of a schedule add up to its total exactly.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

from dianfei.core.errors import ValidationError
from dianfei.core.money import fmt_yuan, parse_decimal, to_fen
from dianfei.core.rules import rule_cache

POLICY_FILE = Path(__file__).with_name("plans.toml")
KINDS = ("pay_plan", "instalment")
_RULES = ("down_payment_min", "instalments_min", "instalments_max", "max_span_days",
          "min_instalment", "approval_above", "approval_always", "grace_days", "interval_days",
          "down_payment_days")


def segment_of(low_income: bool) -> str:
    """The segment a customer's plan policy is chosen by (as the dunning snapshot's)."""
    return "low_income" if low_income else "standard"


@dataclass(frozen=True)
class PlanRules:
    """One row of the policy: what a plan for this class and segment may be."""

    row: str
    down_payment_min: Decimal
    instalments_min: int
    instalments_max: int
    max_span_days: int
    min_instalment: int
    approval_above: int
    approval_always: bool
    grace_days: int
    interval_days: int
    down_payment_days: int

    def min_down_payment(self, total: int) -> int:
        """Fen: the share of ``total`` due first, rounded up to the fen (never below policy)."""
        return int((Decimal(total) * self.down_payment_min).to_integral_value(ROUND_CEILING))

    def needs_approval(self, total: int) -> bool:
        return self.approval_always or total > self.approval_above

    def to_json(self) -> dict[str, Any]:
        return {"row": self.row, "down_payment_min": str(self.down_payment_min),
                "instalments_min": self.instalments_min, "instalments_max": self.instalments_max,
                "max_span_days": self.max_span_days,
                "min_instalment": fmt_yuan(self.min_instalment),
                "approval_above": fmt_yuan(self.approval_above),
                "approval_always": self.approval_always, "grace_days": self.grace_days,
                "interval_days": self.interval_days, "down_payment_days": self.down_payment_days}


@dataclass(frozen=True)
class PlanPolicy:
    rows: Mapping[tuple[str, str], PlanRules]
    #: days after its period ends that an instalment on a not-yet-issued bill falls due
    unbilled_due_days: int
    source: str = ""

    def rules_for(self, customer_class: str, segment: str) -> PlanRules:
        found = self.rows.get((customer_class, segment)) or self.rows.get(("*", segment))
        if found is None:
            raise ValidationError(f"no payment plan policy for class {customer_class!r} segment "
                                  f"{segment!r} in {self.source or 'plans.toml'}")
        return found


def _int(raw: Mapping[str, Any], key: str, where: str, low: int = 0) -> int:
    v = raw.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise ValidationError(f"{where}: {key} must be a whole number ≥ {low}, got {v!r}")
    return v


def parse_policy(data: Mapping[str, Any], source: str = "") -> PlanPolicy:
    """The policy from parsed TOML; refuses a row that is incomplete or cannot be met."""
    rows: dict[tuple[str, str], PlanRules] = {}
    for cls, segments in data.items():
        if cls == "defaults":
            continue
        if not isinstance(segments, dict):
            raise ValidationError(f"{source}: [{cls}] must hold one table per segment")
        for seg, raw in segments.items():
            where = f"{source} [{cls}.{seg}]"
            unknown = set(raw) - set(_RULES)
            if unknown:
                raise ValidationError(f"{where}: unknown rule(s) {', '.join(sorted(unknown))}")
            share = parse_decimal(str(raw.get("down_payment_min", "")), f"{where} down_payment_min",
                                  allow_negative=False)
            if share >= 1:
                raise ValidationError(f"{where}: down_payment_min must be below 1, got {share}")
            rules = PlanRules(
                row=f"{cls}.{seg}", down_payment_min=share,
                instalments_min=_int(raw, "instalments_min", where, 1),
                instalments_max=_int(raw, "instalments_max", where, 1),
                max_span_days=_int(raw, "max_span_days", where, 1),
                min_instalment=to_fen(parse_decimal(str(raw.get("min_instalment", "")),
                                                    f"{where} min_instalment", places=2,
                                                    allow_negative=False)),
                approval_above=to_fen(parse_decimal(str(raw.get("approval_above", "")),
                                                    f"{where} approval_above", places=2,
                                                    allow_negative=False)),
                approval_always=bool(raw.get("approval_always", False)),
                grace_days=_int(raw, "grace_days", where),
                interval_days=_int(raw, "interval_days", where, 1),
                down_payment_days=_int(raw, "down_payment_days", where))
            if rules.instalments_min > rules.instalments_max:
                raise ValidationError(f"{where}: instalments_min {rules.instalments_min} > "
                                      f"instalments_max {rules.instalments_max}")
            rows[(cls, seg)] = rules
    defaults = data.get("defaults", {})
    return PlanPolicy(rows, _int(defaults, "unbilled_due_days", f"{source} [defaults]"), source)


@rule_cache(maxsize=4)
def plan_policy(path: Path = POLICY_FILE) -> PlanPolicy:
    with path.open("rb") as fh:
        return parse_policy(tomllib.load(fh), path.name)


# -- the arithmetic ------------------------------------------------------------------------------


def spread(amount: int, n: int) -> list[int]:
    """``amount`` fen in ``n`` instalments that differ by at most one fen and add up exactly;
    the extra fen go to the first ones (collected sooner)."""
    if n < 1:
        raise ValidationError(f"a plan needs at least one instalment, got {n}")
    base, extra = divmod(amount, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def _refuse(rules: PlanRules, rule: str, what: str) -> ValidationError:
    return ValidationError(f"plan refused by policy {rules.row}: {rule} — {what}")


def check_plan(rules: PlanRules, *, total: int, down_payment: int,
               instalments: Sequence[tuple[date, int]], today: date) -> None:
    """Refuse a plan outside ``rules``, naming the rule and the limit. ``instalments`` are the
    ones after the down payment, with their (provisional) due dates."""
    if total <= 0:
        raise ValidationError(f"nothing to spread: the plan's total is {fmt_yuan(total)} yuan")
    if down_payment < 0:
        raise ValidationError(f"the down payment cannot be negative ({fmt_yuan(down_payment)})")
    need = rules.min_down_payment(total)
    if down_payment < need:
        raise _refuse(rules, "down_payment_min",
                      f"the down payment {fmt_yuan(down_payment)} is below "
                      f"{fmt_yuan(need)} ({rules.down_payment_min} of {fmt_yuan(total)})")
    n = len(instalments)
    if n < rules.instalments_min:
        raise _refuse(rules, "instalments_min", f"{n} instalments, at least "
                      f"{rules.instalments_min}")
    if n > rules.instalments_max:
        raise _refuse(rules, "instalments_max", f"{n} instalments, at most "
                      f"{rules.instalments_max}")
    dates = [d for d, _ in instalments]
    if dates != sorted(dates) or len(set(dates)) != n:
        raise ValidationError("instalment dates must be strictly increasing")
    if dates[0] < today:
        raise ValidationError(f"the first instalment ({dates[0]}) is before today ({today})")
    last = today + timedelta(days=rules.max_span_days)
    if dates[-1] > last:
        raise _refuse(rules, "max_span_days", f"the last instalment falls due {dates[-1]}, "
                      f"after {last} ({rules.max_span_days} days)")
    for i, (_, a) in enumerate(instalments, start=1):
        if a < rules.min_instalment:
            raise _refuse(rules, "min_instalment", f"instalment {i} is {fmt_yuan(a)} yuan, the "
                          f"smallest allowed is {fmt_yuan(rules.min_instalment)}")
    added = down_payment + sum(a for _, a in instalments)
    if added != total:
        raise ValidationError(f"the down payment and instalments add up to {fmt_yuan(added)} "
                              f"yuan, the plan's total is {fmt_yuan(total)}")


def suggest(rules: PlanRules, total: int, today: date, dates: Sequence[date]) -> \
        tuple[int, list[tuple[date, int]]]:
    """(down payment, instalments) for ``total`` that keep to ``rules``: the smallest down
    payment allowed and as many instalments as the policy allows (the most affordable), taken
    from the candidate due ``dates`` within the longest span. Refused (naming the rule) when
    ``total`` cannot be spread within policy at all."""
    if total <= 0:
        raise ValidationError(f"nothing to spread: the amount owed is {fmt_yuan(total)} yuan")
    down = rules.min_down_payment(total)
    rest = total - down
    last = today + timedelta(days=rules.max_span_days)
    usable = [d for d in dates if today <= d <= last]
    n = min(rules.instalments_max, len(usable),
            rest // rules.min_instalment if rules.min_instalment else rules.instalments_max)
    if n < rules.instalments_min:
        if len(usable) < rules.instalments_min:
            raise _refuse(rules, "max_span_days", f"only {len(usable)} instalment dates fit in "
                          f"{rules.max_span_days} days, at least {rules.instalments_min} needed")
        raise _refuse(rules, "min_instalment",
                      f"{fmt_yuan(rest)} yuan after the down payment makes fewer than "
                      f"{rules.instalments_min} instalments of at least "
                      f"{fmt_yuan(rules.min_instalment)}")
    return down, list(zip(usable[:n], spread(rest, n), strict=True))
