"""Dunning ladders (催费阶梯) as data: ``ladders/*.toml``.

A ladder applies to customer classes × segments and lists levels (催费等级). A segment is a
dunning segment (``standard``, ``low_income``, ``repeat_defaulter``) or a risk segment of the
transparent rules of ``risk/segments.toml`` (``hardship``, ``strategic``, ``suspected_theft``, …;
the snapshot's ``risk_segment``). Which ladder an account is dunned by, first match wins:

1. a low-income account: the ladder of ``low_income`` — always, whatever its risk segment
   (low-income status is never a reason to escalate, and no rule file can change that);
2. the ladder naming the account's risk segment (for its class);
3. the ladder naming its dunning segment (``repeat_defaulter`` or ``standard``).

No two ladders may name the same (class, segment), so each step finds at most one ladder and
every account is dunned by at most one. Ladders naming only dunning segments behave exactly as
before risk segments existed.

A ladder may instead name a strategy experiment's arms (``experiment = "…"``, ``arms = […]``;
``risk/experiments.py``, ``dianfei experiment create``): from the experiment's start, the
accounts assigned to those arms are dunned by it — before their risk or dunning segment's
ladder, never before the low-income one (step 1 stays first). Arms no ladder names (the
champion, the holdout) are dunned by the usual ladders. All arm ladders name one experiment.

A level's conditions: days past the DUE date of the oldest unpaid bill (never the issue date: the known
fault of engines that start the dunning clock at the invoice), amount overdue, risk band, the
protected flag, and whether the account has an open payment plan. Its actions: ``sms``,
``email``, ``wechat``, ``letter`` (with a ``notice`` name), ``collector_visit``, ``stop_notice``,
``suspension_order``, ``referral``, ``inspection``.

The loader refuses a file whose levels overlap (two levels an account could match at once) or
that has an unreachable level (an empty range, an unknown band, a stop for protected customers),
naming the file and the level. Because levels never overlap, every account matches at most one
level of at most one ladder: evaluation is a pure, deterministic function of the snapshot.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dianfei.core.errors import ValidationError
from dianfei.core.money import parse_decimal, to_fen

if TYPE_CHECKING:
    import polars as pl

LADDER_DIR = Path(__file__).with_name("ladders")
RISK_BANDS = ("low", "medium", "high")
#: dunning segments; repeat_defaulter (屡欠户) is set by the rating (incentives.py)
SEGMENTS = ("standard", "low_income", "repeat_defaulter")
NOTICE_ACTIONS = ("sms", "email", "wechat", "letter")
#: actions that open a worklist task of the same kind (tasks.toml); ``inspection`` (用电检查) goes
#: to the inspectors, not to a collector's list, and stays open after the arrears are paid
TASK_ACTIONS = ("collector_visit", "referral", "inspection")
ACTIONS = (*NOTICE_ACTIONS, *TASK_ACTIONS, "stop_notice", "suspension_order")
#: notice names a dunning action may send (the notify templates)
NOTICES = ("reminder", "final_reminder", "stop_notice")
#: no upper bound
INF = 10**15
#: the ladder key of an experiment arm (never a segment name: those have no colon)
ARM_PREFIX = "arm:"


class LadderError(ValidationError):
    code = "ladder_invalid"


@dataclass(frozen=True)
class Action:
    type: str
    notice: str | None = None
    channel: str | None = None


@dataclass(frozen=True)
class Level:
    name: str
    index: int
    min_days: int
    max_days: int
    min_fen: int
    max_fen: int
    risk_bands: frozenset[str]
    #: the protected flags this level matches ({True}, {False} or both)
    protected: frozenset[bool]
    open_plan: bool
    actions: tuple[Action, ...]

    def overlaps(self, other: Level) -> bool:
        return (self.min_days <= other.max_days and other.min_days <= self.max_days
                and self.min_fen <= other.max_fen and other.min_fen <= self.max_fen
                and bool(self.risk_bands & other.risk_bands)
                and bool(self.protected & other.protected) and self.open_plan == other.open_plan)


@dataclass(frozen=True)
class Ladder:
    ladder_id: str
    description: str
    source: str
    customer_classes: frozenset[str]
    segments: frozenset[str]
    levels: tuple[Level, ...]
    file: str
    #: the strategy experiment whose arms this ladder duns (None: a segment ladder)
    experiment: str | None = None
    arms: frozenset[str] = frozenset()

    def ladder_keys(self) -> list[str]:
        """The values of the snapshot's ladder key this ladder applies to: its segments, or
        ``arm:<arm>`` for each of its experiment's arms."""
        return sorted(self.segments) + [ARM_PREFIX + a for a in sorted(self.arms)]

    def level(self, name: str) -> Level:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise KeyError(name)


def _int(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise LadderError(f"{where}: must be a whole number, got {v!r}")
    return v


def _fen(v: Any, where: str) -> int:
    return to_fen(parse_decimal(str(v), where, places=2, allow_negative=False))


def _level(raw: dict[str, Any], index: int, file: str) -> Level:
    name = str(raw.get("name") or "")
    where = f"{file} level {name or index + 1}"
    if not name:
        raise LadderError(f"{where}: a level needs a name")
    unknown = set(raw) - {"name", "min_days", "max_days", "min_amount", "max_amount", "risk_bands",
                          "protected", "open_plan", "actions"}
    if unknown:
        raise LadderError(f"{where}: unknown keys {sorted(unknown)}")
    min_days = _int(raw.get("min_days", 1), f"{where} min_days")
    max_days = _int(raw["max_days"], f"{where} max_days") if "max_days" in raw else INF
    min_fen = _fen(raw.get("min_amount", "0.01"), f"{where} min_amount")
    max_fen = _fen(raw["max_amount"], f"{where} max_amount") if "max_amount" in raw else INF
    bands = frozenset(raw.get("risk_bands", RISK_BANDS))
    prot = raw.get("protected", "any")
    protected = frozenset({True, False}) if prot == "any" else frozenset({bool(prot)})
    if prot not in ("any", True, False):
        raise LadderError(f"{where}: protected must be true, false or \"any\", got {prot!r}")
    # unreachable levels: an empty range can never match
    if max_days < 1:
        raise LadderError(f"{where} is unreachable: max_days {max_days} < 1 (an account is "
                          "overdue from the day after its due date)")
    if min_days > max_days:
        raise LadderError(f"{where} is unreachable: min_days {min_days} > max_days {max_days}")
    if min_fen > max_fen:
        raise LadderError(f"{where} is unreachable: min_amount above max_amount")
    if max_fen < 1:
        raise LadderError(f"{where} is unreachable: max_amount below 0.01")
    if not bands or bands - set(RISK_BANDS):
        raise LadderError(f"{where} is unreachable: risk_bands must be a non-empty subset of "
                          f"{list(RISK_BANDS)}, got {sorted(bands)}")
    actions = []
    for a in raw.get("actions", []):
        kind = a.get("type")
        if kind not in ACTIONS:
            raise LadderError(f"{where}: unknown action {kind!r} (known: {', '.join(ACTIONS)})")
        notice = a.get("notice")
        if kind in NOTICE_ACTIONS and notice not in NOTICES:
            raise LadderError(f"{where}: action {kind} needs notice = one of {', '.join(NOTICES)}")
        actions.append(Action(kind, notice, a.get("channel")))
    if not actions:
        raise LadderError(f"{where}: a level needs at least one action")
    stops = {a.type for a in actions} & {"stop_notice", "suspension_order"}
    if stops and True in protected:
        raise LadderError(f"{where} is unreachable for protected customers, who are never "
                          f"suspended: set protected = false on a level with {sorted(stops)}")
    return Level(name, index, min_days, max_days, min_fen, max_fen, bands, protected,
                 bool(raw.get("open_plan", False)), tuple(actions))


def parse_ladder(text: str, file: str) -> Ladder:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LadderError(f"{file}: {exc}") from None
    ladder_id = str(data.get("ladder") or "")
    if not ladder_id:
        raise LadderError(f"{file}: the ladder needs an id (ladder = \"…\")")
    if not data.get("source"):
        raise LadderError(f"{file}: the ladder cites its source (source = \"…\")")
    from dianfei.collections.late_fees import CUSTOMER_CLASSES

    classes = frozenset(data.get("customer_classes", []))
    if not classes or classes - set(CUSTOMER_CLASSES):
        raise LadderError(f"{file}: customer_classes must be a non-empty subset of "
                          f"{list(CUSTOMER_CLASSES)}")
    experiment, arms = data.get("experiment"), frozenset(data.get("arms", []))
    if (experiment is None) != (not arms):
        raise LadderError(f"{file}: an experiment ladder names both the experiment and its arms "
                          "(experiment = \"…\", arms = [\"…\"])")
    if experiment is not None and "segments" in data:
        raise LadderError(f"{file}: an experiment ladder applies to its arms, not to segments "
                          "(remove segments)")
    segments = frozenset(data.get("segments", SEGMENTS if experiment is None else ()))
    known = (*SEGMENTS, *risk_segments())
    if not segments and experiment is None:
        raise LadderError(f"{file}: segments must name at least one segment")
    unknown = sorted(segments - set(known))
    if unknown:
        raise LadderError(f"{file}: unknown segment {', '.join(map(repr, unknown))} (dunning "
                          f"segments: {', '.join(SEGMENTS)}; risk segments: "
                          f"{', '.join(risk_segments())})")
    levels = tuple(_level(raw, i, file) for i, raw in enumerate(data.get("level", [])))
    if not levels:
        raise LadderError(f"{file}: no levels")
    names = [lv.name for lv in levels]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise LadderError(f"{file}: level names repeat: {sorted(dup)}")
    for a, b in itertools.combinations(levels, 2):
        if a.overlaps(b):
            raise LadderError(
                f"{file}: levels {a.name!r} and {b.name!r} overlap (an account {max(a.min_days, b.min_days)}"
                f" days overdue could match both); make their days, amounts, risk bands, "
                "protected flag or open_plan disjoint")
    return Ladder(ladder_id, str(data.get("description", "")), str(data["source"]), classes,
                  segments, levels, file, None if experiment is None else str(experiment), arms)


def risk_segments() -> tuple[str, ...]:
    """The risk segments a ladder may name (the rules of ``risk/segments.toml``)."""
    from dianfei.risk.service import RISK_SEGMENTS

    return tuple(RISK_SEGMENTS)


def load_ladders(directory: Path | None = None) -> list[Ladder]:
    """Every ``*.toml`` of the directory; ladders must not share a (class, segment)."""
    directory = directory or LADDER_DIR
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise LadderError(f"no ladder files in {directory}")
    ladders = [parse_ladder(f.read_text(encoding="utf-8"), f.name) for f in files]
    seen: dict[tuple[str, str], str] = {}
    for ld in ladders:
        for key in itertools.product(sorted(ld.customer_classes), ld.ladder_keys()):
            if key in seen:
                what = (f"arm {key[1].removeprefix(ARM_PREFIX)}" if key[1].startswith(ARM_PREFIX)
                        else f"segment {key[1]}")
                raise LadderError(f"{ld.file}: ladder {ld.ladder_id!r} and {seen[key]} both apply to "
                                  f"class {key[0]} {what}")
            seen[key] = f"{ld.ladder_id!r} ({ld.file})"
    experiments = {ld.experiment: ld.file for ld in ladders if ld.experiment is not None}
    if len(experiments) > 1:
        raise LadderError(f"{directory}: arm ladders name more than one experiment "
                          f"({', '.join(f'{e} in {f}' for e, f in sorted(experiments.items()))}); "
                          "one experiment drives the ladders at a time")
    ids = [ld.ladder_id for ld in ladders]
    if len(set(ids)) != len(ids):
        raise LadderError(f"{directory}: ladder ids repeat: {ids}")
    return ladders


_CACHE: dict[Path, list[Ladder]] = {}


def ladders(directory: Path | None = None) -> list[Ladder]:
    key = (directory or LADDER_DIR).resolve()
    if key not in _CACHE:
        _CACHE[key] = load_ladders(key)
    return _CACHE[key]


def evaluate(snapshot: pl.DataFrame, all_ladders: list[Ladder]) -> pl.DataFrame:
    """The level each account is at, from a snapshot with columns account_id, customer_class,
    segment, days_overdue, amount_overdue (fen), risk_band, protected, open_plan — and, when
    present, ``ladder_days`` (read instead of days_overdue: a kept promise restarts the count, a
    broken one raises it to the next level) and ``open_promise`` (no level while set).

    With a ``risk_segment`` column (the daily snapshot's) and an ``experiment_arm`` column (the
    account's arm of the experiment the ladders name, null when none), the ladder is chosen by
    the module's precedence: low-income accounts by the ``low_income`` ladder, then the ladder of
    the account's arm, then a ladder naming the risk segment, then the one naming the dunning
    ``segment``.

    Returns account_id, ladder, level (null when no level applies) — vectorised: one
    ``when/then`` per level, at most one of which can be true (levels never overlap).
    """
    import polars as pl

    table = _level_table(tuple(all_ladders))
    snap = snapshot.with_columns(_ladder_segment(snapshot, table).alias("segment")).select(
        "account_id", "customer_class", "segment",
        pl.col("ladder_days" if "ladder_days" in snapshot.columns else "days_overdue")
        .alias("_days"),
        "amount_overdue", "risk_band", "protected", "open_plan",
        (pl.col("open_promise") if "open_promise" in snapshot.columns else pl.lit(False))
        .alias("_paused"))
    # a join on (class, segment) finds each account's ladder and its candidate levels; the
    # level conditions are then one filter over the candidates (levels never overlap, so at
    # most one survives per account) — columns, not a chain of when/then per level
    keys = ["customer_class", "segment"]
    lad = snap.join(table.select(*keys, "ladder").unique(), on=keys, how="left",
                    maintain_order="left")
    hit = (snap.join(table, on=keys, how="inner")
           .filter(pl.col("_days").is_between(pl.col("min_days"), pl.col("max_days"))
                   & ~pl.col("_paused")
                   & pl.col("amount_overdue").is_between(pl.col("min_fen"), pl.col("max_fen"))
                   & pl.col("bands").list.contains(pl.col("risk_band"))
                   & pl.col("protected_any").list.contains(pl.col("protected"))
                   & (pl.col("open_plan") == pl.col("plan")))
           .select("account_id", "level").unique("account_id", keep="first"))
    return (lad.join(hit, on="account_id", how="left", maintain_order="left")
            .select("account_id", "ladder", "level"))


def _ladder_segment(snapshot: pl.DataFrame, table: pl.DataFrame) -> pl.Expr:
    """The segment whose ladder duns each account (the precedence of the module doc)."""
    import polars as pl

    dunning = pl.col("segment")
    keys = table.select(pl.concat_str("customer_class", "segment", separator="\x1f")).to_series()

    def named(key: pl.Expr) -> pl.Expr:
        return pl.concat_str(pl.col("customer_class"), key, separator="\x1f").is_in(
            keys.implode()).fill_null(False)

    chosen = dunning
    if "risk_segment" in snapshot.columns:
        chosen = pl.when(named(pl.col("risk_segment"))).then(pl.col("risk_segment")).otherwise(chosen)
    if "experiment_arm" in snapshot.columns:
        arm = pl.lit(ARM_PREFIX) + pl.col("experiment_arm")
        chosen = pl.when(named(arm)).then(arm).otherwise(chosen)
    # the law first: a low-income account is never moved off its own ladder
    return pl.when(dunning == "low_income").then(dunning).otherwise(chosen)


_TABLES: dict[tuple[Ladder, ...], pl.DataFrame] = {}


def _level_table(all_ladders: tuple[Ladder, ...]) -> pl.DataFrame:
    """One row per (class, segment, level) of the ladders: the level's conditions as columns."""
    import polars as pl

    key = all_ladders  # frozen dataclasses: equal ladders share a table, a changed one does not
    found = _TABLES.get(key)
    if found is not None:
        return found
    rows = [{"customer_class": c, "segment": seg, "ladder": ld.ladder_id, "level": lv.name,
             "min_days": lv.min_days, "max_days": lv.max_days, "min_fen": lv.min_fen,
             "max_fen": lv.max_fen, "bands": sorted(lv.risk_bands),
             "protected_any": sorted(lv.protected), "plan": lv.open_plan}
            for ld in all_ladders for c in sorted(ld.customer_classes)
            for seg in ld.ladder_keys() for lv in ld.levels]
    schema: dict[str, Any] = {"customer_class": pl.String, "segment": pl.String, "ladder": pl.String,
              "level": pl.String, "min_days": pl.Int64, "max_days": pl.Int64,
              "min_fen": pl.Int64, "max_fen": pl.Int64, "bands": pl.List(pl.String),
              "protected_any": pl.List(pl.Boolean), "plan": pl.Boolean}
    table = pl.DataFrame(rows, schema=schema)
    if len(_TABLES) > 64:  # ladders loaded in tests with many variants
        _TABLES.clear()
    _TABLES[key] = table
    return table
