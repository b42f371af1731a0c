"""Assignment rules (派单规则) of the daily worklists, as data (``assignment.toml``), and the pure
frame arithmetic of ranking, assigning and balancing — no database here, so the same functions
run in the daily build, the benchmark and the property tests.

- :func:`rank` — expected recovery (预计回收) = P(pay) × amount overdue × age factor, and the
  sentence that explains the rank;
- :func:`assign` — first matching rule (station, region, customer class, amount band, language →
  a collector or a pool), else the customer's own collector when active, else the least-loaded
  active collector of the station. A rule that would hand accounts to an inactive collector (or
  a pool with nobody active) is refused naming the rule;
- :func:`balance` — the lowest-ranked rows of collectors over capacity move to the least-loaded
  active collectors of the same station that have room.
"""

from __future__ import annotations

import heapq
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dianfei.core.errors import ValidationError
from dianfei.core.money import parse_decimal, to_fen

if TYPE_CHECKING:
    import polars as pl

RULES_FILE = Path(__file__).with_name("assignment.toml")
_RULE_KEYS = {"name", "stations", "regions", "customer_classes", "languages", "min_amount",
              "max_amount", "collector", "pool"}
_TOP_KEYS = {"task_kinds", "default_capacity", "ranking", "pools", "rule"}
_RANK_KEYS = {"age_half_life_days", "min_probability", "max_probability"}
#: how the rule column names the two defaults
OWN = "own collector"
STATION = "station least loaded"


@dataclass(frozen=True)
class Rule:
    name: str
    stations: frozenset[str] | None = None
    regions: frozenset[str] | None = None
    customer_classes: frozenset[str] | None = None
    languages: frozenset[str] | None = None
    min_fen: int | None = None
    max_fen: int | None = None
    collector: str | None = None
    pool: str | None = None

    def condition(self) -> pl.Expr:
        import polars as pl

        cond = pl.lit(True)
        for column, values in (("station_id", self.stations), ("region_id", self.regions),
                               ("customer_class", self.customer_classes),
                               ("language", self.languages)):
            if values is not None:
                cond = cond & pl.col(column).is_in(sorted(values)).fill_null(False)
        if self.min_fen is not None:
            cond = cond & (pl.col("amount_overdue") >= self.min_fen)
        if self.max_fen is not None:
            cond = cond & (pl.col("amount_overdue") <= self.max_fen)
        return cond


@dataclass(frozen=True)
class Rules:
    task_kinds: tuple[str, ...] = ("collector_visit",)
    default_capacity: int = 60
    age_half_life_days: float = 90.0
    min_probability: float = 0.02
    max_probability: float = 0.98
    pools: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()


def _strings(raw: Any, where: str) -> frozenset[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw or not all(isinstance(v, str) and v for v in raw):
        raise ValidationError(f"{where}: must be a non-empty list of names, got {raw!r}")
    return frozenset(raw)


def parse_rules(text: str, source: str = "assignment.toml") -> Rules:
    """Parse an assignment file; anything wrong is refused naming the file, rule and key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"{source}: not valid TOML: {exc}") from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ValidationError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
    kinds = data.get("task_kinds", ["collector_visit"])
    if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) and k for k in kinds):
        raise ValidationError(f"{source}: task_kinds must be a non-empty list, got {kinds!r}")
    cap = data.get("default_capacity", 60)
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        raise ValidationError(f"{source}: default_capacity must be a whole number ≥ 1, got {cap!r}")
    ranking = data.get("ranking", {})
    bad = set(ranking) - _RANK_KEYS
    if bad:
        raise ValidationError(f"{source}: [ranking] unknown key(s) {', '.join(sorted(bad))}")
    half = ranking.get("age_half_life_days", 90)
    lo, hi = ranking.get("min_probability", 0.02), ranking.get("max_probability", 0.98)
    if not isinstance(half, int | float) or half <= 0:
        raise ValidationError(f"{source}: age_half_life_days must be > 0, got {half!r}")
    if not (isinstance(lo, int | float) and isinstance(hi, int | float) and 0 <= lo <= hi <= 1):
        raise ValidationError(f"{source}: need 0 ≤ min_probability ≤ max_probability ≤ 1, "
                              f"got {lo!r} and {hi!r}")
    pools: dict[str, tuple[str, ...]] = {}
    for name, members in data.get("pools", {}).items():
        got = _strings(members, f"{source}: pool {name!r}")
        pools[name] = tuple(sorted(got or ()))
    rules = []
    seen: set[str] = set()
    for i, raw in enumerate(data.get("rule", []), 1):
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValidationError(f"{source}: rule #{i} needs a name")
        where = f"{source}: rule {name!r}"
        if name in seen:
            raise ValidationError(f"{where}: the name is used twice")
        seen.add(name)
        extra = set(raw) - _RULE_KEYS
        if extra:
            raise ValidationError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        collector, pool = raw.get("collector"), raw.get("pool")
        if (collector is None) == (pool is None):
            raise ValidationError(f"{where}: name exactly one of collector or pool")
        if pool is not None and pool not in pools:
            raise ValidationError(f"{where}: pool {pool!r} is not defined under [pools]")
        lo_fen = (to_fen(parse_decimal(raw["min_amount"], f"{where}: min_amount", places=2,
                                       allow_negative=False)) if "min_amount" in raw else None)
        hi_fen = (to_fen(parse_decimal(raw["max_amount"], f"{where}: max_amount", places=2,
                                       allow_negative=False)) if "max_amount" in raw else None)
        if lo_fen is not None and hi_fen is not None and lo_fen > hi_fen:
            raise ValidationError(f"{where}: min_amount above max_amount matches nothing")
        rules.append(Rule(name, _strings(raw.get("stations"), f"{where}: stations"),
                          _strings(raw.get("regions"), f"{where}: regions"),
                          _strings(raw.get("customer_classes"), f"{where}: customer_classes"),
                          _strings(raw.get("languages"), f"{where}: languages"),
                          lo_fen, hi_fen, collector, pool))
    return Rules(tuple(kinds), cap, float(half), float(lo), float(hi), pools, tuple(rules))


def load_rules(path: Path | None = None) -> Rules:
    p = path or RULES_FILE
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"assignment rules {p}: cannot be read ({exc.strerror})") from None
    return parse_rules(text, p.name)


# -- ranking -----------------------------------------------------------------------------------


def _yuan(fen: int) -> str:
    whole, part = divmod(abs(int(fen)), 100)
    return f"{'-' if fen < 0 else ''}¥{whole:,}.{part:02d}"


def rank(work: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    """``work`` (account_id, amount_overdue fen, days_overdue, p_default 0–1 or null,
    risk_reasons) with pay_probability, age_factor, expected (fen) and reason, sorted best
    first. A missing risk score counts as an even chance."""
    import polars as pl

    p_pay = (1.0 - pl.col("p_default").fill_null(0.5)).clip(rules.min_probability,
                                                             rules.max_probability)
    age = pl.lit(0.5).pow(pl.col("days_overdue").cast(pl.Float64) / rules.age_half_life_days)
    out = work.with_columns(p_pay.alias("pay_probability"), age.alias("age_factor")).with_columns(
        (pl.col("pay_probability") * pl.col("amount_overdue").cast(pl.Float64) * pl.col("age_factor"))
        .round(0).cast(pl.Int64).alias("expected"))
    amounts = [_yuan(f) for f in out["amount_overdue"].to_list()]
    reason = pl.concat_str([
        pl.Series("_amt", amounts, pl.String), pl.lit(" overdue "),
        pl.col("days_overdue").cast(pl.String), pl.lit(" days; "),
        (pl.col("pay_probability") * 100).round(0).cast(pl.Int64).cast(pl.String),
        pl.lit("% likely to pay; reasons: "),
        pl.when(pl.col("risk_reasons").fill_null("") == "").then(pl.lit("no risk signals"))
        .otherwise(pl.col("risk_reasons"))])
    # a paid-up account whose task is still open stays listed (last), saying why
    reason = (pl.when(pl.col("amount_overdue") <= 0)
              .then(pl.lit("nothing overdue now; the task is still open — close it if settled"))
              .otherwise(reason))
    return (out.with_columns(reason.alias("reason"))
            .sort(["expected", "amount_overdue", "account_id"], descending=[True, True, False]))


# -- assigning ---------------------------------------------------------------------------------


def _least_loaded(accounts: list[str], members: list[str], load: dict[str, int]) -> list[str]:
    """Give each account (best first) to whichever member has the fewest rows so far (ties: the
    lower id), counting each as it is given."""
    heap = [(load.get(m, 0), m) for m in members]
    heapq.heapify(heap)
    out = []
    for _ in accounts:
        n, m = heapq.heappop(heap)
        out.append(m)
        load[m] = n + 1
        heapq.heappush(heap, (n + 1, m))
    return out


def assign(ranked: pl.DataFrame, roster: pl.DataFrame, rules: Rules,
           base_load: dict[str, int] | None = None) -> pl.DataFrame:
    """``ranked`` (account_id, station_id, region_id, customer_class, language, collector_id
    (the customer's own), amount_overdue …, best first) with collector_id (the assignee) and
    rule. ``roster``: collector_id, station_id, active, and optionally languages (when a
    customer's own collector is off duty, station colleagues who speak the customer's language
    come first). Every account gets exactly one active collector, or the call is refused
    naming what stands in the way. ``base_load``: rows the collectors already have (a day's
    list being completed)."""
    import polars as pl

    active = roster.filter(pl.col("active"))
    active_ids = set(active["collector_id"].to_list())
    known = set(roster["collector_id"].to_list())
    idx = pl.lit(None, pl.Int32)
    for i, r in reversed(list(enumerate(rules.rules))):
        idx = pl.when(r.condition()).then(pl.lit(i, pl.Int32)).otherwise(idx)
    w = ranked.with_columns(idx.alias("_rule"), pl.col("collector_id").alias("own_collector"))
    target = pl.lit(None, pl.String)
    for i, r in enumerate(rules.rules):
        if r.collector is not None:
            target = pl.when(pl.col("_rule") == i).then(pl.lit(r.collector)).otherwise(target)
    own_ok = pl.col("own_collector").is_in(sorted(active_ids)).fill_null(False)
    w = w.with_columns(
        pl.when(pl.col("_rule").is_not_null()).then(target)
        .when(own_ok).then(pl.col("own_collector")).otherwise(pl.lit(None, pl.String))
        .alias("collector_id"),
        pl.when(pl.col("_rule").is_not_null())
        .then(pl.col("_rule").replace_strict(list(range(len(rules.rules))),
                                             [r.name for r in rules.rules], default=None,
                                             return_dtype=pl.String))
        .when(own_ok).then(pl.lit(OWN)).otherwise(pl.lit(STATION)).alias("rule"))
    # a rule naming one collector: that collector must exist and be on duty
    for i, r in enumerate(rules.rules):
        if r.collector is None:
            continue
        hits = int((w["_rule"] == i).sum())
        if hits and r.collector not in known:
            raise ValidationError(f"assignment rule {r.name!r}: collector {r.collector!r} is not "
                                  f"on the roster ({hits} account(s) would go to nobody)")
        if hits and r.collector not in active_ids:
            raise ValidationError(f"assignment rule {r.name!r}: collector {r.collector!r} is "
                                  f"inactive; {hits} account(s) cannot be assigned to them")
    fixed = w.filter(pl.col("collector_id").is_not_null())
    load: dict[str, int] = dict(base_load or {})
    for c, n in fixed.group_by("collector_id").len().iter_rows():
        load[c] = load.get(c, 0) + n
    # pools, then the station fallback: each account, best first, to the least-loaded member
    parts = [fixed]
    for i, r in enumerate(rules.rules):
        if r.pool is None:
            continue
        rows = w.filter(pl.col("_rule") == i)
        if rows.height == 0:
            continue
        members = [m for m in rules.pools[r.pool] if m in active_ids]
        if not members:
            raise ValidationError(f"assignment rule {r.name!r}: pool {r.pool!r} has no active "
                                  f"collector; {rows.height} account(s) cannot be assigned")
        got = _least_loaded(rows["account_id"].to_list(), members, load)
        parts.append(rows.with_columns(pl.Series("collector_id", got, pl.String)))
    orphans = w.filter(pl.col("_rule").is_null() & pl.col("collector_id").is_null())
    if orphans.height:
        by_station: dict[str | None, list[str]] = {}
        speaks: dict[str, set[str]] = {}
        langs = (active["languages"] if "languages" in active.columns
                 else pl.Series([None] * active.height, dtype=pl.String))
        for cid, st, spoken in zip(active["collector_id"], active["station_id"], langs,
                                   strict=True):
            by_station.setdefault(st, []).append(cid)
            speaks[cid] = set((spoken or "").split(",")) - {""}
        everyone = sorted(active_ids)
        if "language" not in orphans.columns:
            orphans = orphans.with_columns(pl.lit(None, pl.String).alias("language"))
        for (st, lang), rows in orphans.group_by(["station_id", "language"], maintain_order=True):
            members = by_station.get(st) or everyone
            if not members:
                raise ValidationError(f"no active collector on the roster: {rows.height} "
                                      f"account(s) of station {st!r} cannot be assigned")
            rule = STATION if by_station.get(st) else f"{STATION} (none active in {st})"
            # among them, those who speak the customer's language, when anybody does
            fluent = [m for m in members if lang is not None and lang in speaks.get(m, set())]
            if fluent:
                members, rule = fluent, f"{rule}, speaks {lang}"
            got = _least_loaded(rows["account_id"].to_list(), sorted(members), load)
            parts.append(rows.with_columns(pl.Series("collector_id", got, pl.String),
                                           pl.lit(rule).alias("rule")))
    return (pl.concat(parts, how="vertical_relaxed").drop("_rule")
            .sort(["expected", "amount_overdue", "account_id"], descending=[True, True, False]))


# -- ranks and balancing -----------------------------------------------------------------------


def with_ranks(entries: pl.DataFrame) -> pl.DataFrame:
    """Rank 1, 2, … within each collector by expected recovery (then amount, then account)."""
    import polars as pl

    return (entries.sort(["collector_id", "expected", "amount_overdue", "account_id"],
                         descending=[False, True, True, False])
            .with_columns(pl.int_range(1, pl.len() + 1).over("collector_id").alias("rank")))


def balance(entries: pl.DataFrame, roster: pl.DataFrame) -> pl.DataFrame:
    """The moves that bring collectors within capacity: account_id, from_collector,
    to_collector. ``entries``: account_id, collector_id, expected, amount_overdue;
    ``roster``: collector_id, station_id, active, capacity. Rows beyond a collector's capacity
    (an inactive collector's capacity is 0), lowest-ranked first, go to the least-loaded active
    collector of the same station that still has room; what finds no room stays."""
    import polars as pl

    ranked = with_ranks(entries).join(
        roster.select("collector_id", "station_id", "active", "capacity"), on="collector_id",
        how="left")
    ranked = ranked.with_columns(
        pl.when(pl.col("active").fill_null(False)).then(pl.col("capacity")).otherwise(0)
        .alias("_cap"))
    over = ranked.filter(pl.col("rank") > pl.col("_cap")).sort(
        ["station_id", "rank", "expected"], descending=[False, True, False])
    load: dict[str, int] = dict(entries.group_by("collector_id").len().iter_rows())
    moves: list[tuple[str, str, str]] = []
    act = roster.filter(pl.col("active"))
    for (st,), rows in over.group_by(["station_id"], maintain_order=True):
        room = [(load.get(c, 0), c, cap) for c, cap in
                act.filter(pl.col("station_id") == st).select("collector_id", "capacity").iter_rows()
                if load.get(c, 0) < cap]
        heapq.heapify(room)
        for acct, frm in rows.select("account_id", "collector_id").iter_rows():
            if not room:
                break
            n, c, cap = heapq.heappop(room)
            if c == frm:  # an over-capacity collector has no room; defensive
                continue
            moves.append((acct, frm, c))
            load[c], load[frm] = n + 1, load.get(frm, 0) - 1
            if n + 1 < cap:
                heapq.heappush(room, (n + 1, c, cap))
    return pl.DataFrame(moves, schema={"account_id": pl.String, "from_collector": pl.String,
                                       "to_collector": pl.String}, orient="row")

