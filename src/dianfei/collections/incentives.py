"""Rewards and penalties (奖惩): the good-payer rating (信用等级) and repeat-defaulter penalties.

Every day (a step of ``service.run_day``) each open account is rated from its last 12 months of
collections (``incentives.toml``): months paid with no late fee, bills paid late, broken plans
and promises, suspensions → points → grade A/B/C/D. A changed grade is a ``rating_changed``
event on the account. The grade is printed on the bill (billing's ``RATING_HOOK`` loads
:func:`bill_document_ratings`) and the portal reads it with :func:`rating_of`.

A repeat defaulter (屡欠户: enough late bills, broken promises or suspensions, or a D) is put in
the ``repeat_defaulter`` dunning segment — the shorter ladder ``ladders/repeat_defaulter.toml``
(:func:`with_repeat_defaulters`, called by the snapshot) — and gets one proposal task when it
becomes one: a deposit (保证金) or conversion to smart prepayment (智能交费), by class. Low-income
households are never repeat defaulters.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dianfei.collections import ops_repository as repo
from dianfei.core.clock import Clock
from dianfei.core.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    import polars as pl
    from sqlalchemy import Engine

    from dianfei.db.engine import Database

RULES_FILE = Path(__file__).with_name("incentives.toml")
PROPOSAL_KINDS = ("deposit_proposal", "prepay_conversion")
#: the facts a rating counts, from collection events: a month paid (and without a late fee),
#: broken plans and promises, suspensions
PAID, FEE, BROKEN, STOPPED = ("payment_received", "late_fee_accrued",
                              ("plan_broken", "promise_broken"), "suspended")
FACT_EVENTS = (PAID, FEE, *BROKEN, STOPPED)
#: facts a day of collections records only after it rated the accounts (its late fees, its
#: stops): a day's rating counts them from the next day on — also when the day is run again
#: after a crash that left some of them written, so the rerun rates as the first run did
LATER_IN_THE_DAY = ("late_fee_accrued", "suspended")


@dataclass(frozen=True)
class IncentiveRules:
    window_months: int
    base_points: int
    on_time: int
    on_time_cap: int
    late: int
    broken: int
    suspension: int
    #: (grade, min_points), highest first
    grades: tuple[tuple[str, int], ...]
    min_late: int
    min_broken: int
    min_suspensions: int
    defaulter_grades: frozenset[str]
    proposals: Mapping[str, str]

    def proposal_for(self, customer_class: str) -> str:
        return self.proposals.get(customer_class) or self.proposals["default"]


def _whole(raw: Mapping[str, Any], name: str, file: str, *, low: int | None = None) -> int:
    v = raw.get(name)
    if isinstance(v, bool) or not isinstance(v, int) or (low is not None and v < low):
        bound = f" ≥ {low}" if low is not None else ""
        raise ValidationError(f"{file}: {name} must be a whole number{bound}, got {v!r}")
    return v


def parse_rules(text: str, file: str) -> IncentiveRules:
    """The rating rules; refuses a file naming its values wrongly, with grades out of order or
    without one at 0 points (every account must get a grade), or an unknown proposal kind."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"{file}: {exc}") from None
    if not data.get("source"):
        raise ValidationError(f"{file}: the rules cite their source (source = \"…\")")
    pts = data.get("points") or {}
    grades = tuple((str(g.get("grade")), _whole(g, "min_points", file, low=0))
                   for g in data.get("grades") or ())
    if not grades or [p for _, p in grades] != sorted((p for _, p in grades), reverse=True) \
            or grades[-1][1] != 0 or len({p for _, p in grades}) != len(grades):
        raise ValidationError(f"{file}: [[grades]] must go from the highest min_points down to a "
                              f"grade at 0, each distinct; got {list(grades)}")
    rd = data.get("repeat_defaulter") or {}
    names = {g for g, _ in grades}
    bad = set(rd.get("grades", [])) - names
    if bad:
        raise ValidationError(f"{file}: repeat_defaulter.grades names unknown grades {sorted(bad)}")
    proposals = {str(k): str(v) for k, v in (data.get("proposals") or {}).items()}
    if "default" not in proposals or set(proposals.values()) - set(PROPOSAL_KINDS):
        raise ValidationError(f"{file}: [proposals] needs a default, each one of "
                              f"{', '.join(PROPOSAL_KINDS)}; got {proposals}")
    return IncentiveRules(
        window_months=_whole(data, "window_months", file, low=1),
        base_points=_whole(data, "base_points", file, low=0),
        on_time=_whole(pts, "on_time", file), on_time_cap=_whole(pts, "on_time_cap", file, low=0),
        late=_whole(pts, "late", file), broken=_whole(pts, "broken", file),
        suspension=_whole(pts, "suspension", file), grades=grades,
        min_late=_whole(rd, "min_late", file, low=1), min_broken=_whole(rd, "min_broken", file, low=1),
        min_suspensions=_whole(rd, "min_suspensions", file, low=1),
        defaulter_grades=frozenset(rd.get("grades", [])), proposals=proposals)


_CACHE: dict[Path, IncentiveRules] = {}


def rules(path: Path | None = None) -> IncentiveRules:
    key = (path or RULES_FILE).resolve()
    if key not in _CACHE:
        _CACHE[key] = parse_rules(key.read_text(encoding="utf-8"), key.name)
    return _CACHE[key]


def window_start(day: date, months: int) -> date:
    """The first day of the window: the same day ``months`` months back (the month's last day
    when it has fewer days)."""
    import calendar

    y, m = divmod(day.year * 12 + day.month - 1 - months, 12)
    return date(y, m + 1, min(day.day, calendar.monthrange(y, m + 1)[1]))


def rate_frame(facts: pl.DataFrame, r: IncentiveRules) -> pl.DataFrame:
    """Points, grade and the repeat-defaulter mark from the facts (account_id, customer_id,
    low_income, on_time, late, broken, suspensions) — a pure function of them."""
    import polars as pl

    points = (pl.lit(r.base_points) + pl.min_horizontal(pl.col("on_time") * r.on_time,
                                                         pl.lit(r.on_time_cap))
              + pl.col("late") * r.late + pl.col("broken") * r.broken
              + pl.col("suspensions") * r.suspension).clip(0, 100)
    grade: pl.Expr = pl.lit(r.grades[-1][0])
    for g, low in reversed(r.grades[:-1]):
        grade = pl.when(pl.col("points") >= low).then(pl.lit(g)).otherwise(grade)
    out = facts.with_columns(points.cast(pl.Int64).alias("points")).with_columns(grade.alias("grade"))
    return out.with_columns(
        (~pl.col("low_income")
         & ((pl.col("late") >= r.min_late) | (pl.col("broken") >= r.min_broken)
            | (pl.col("suspensions") >= r.min_suspensions)
            | pl.col("grade").is_in(sorted(r.defaulter_grades)))).alias("repeat_defaulter"))


def facts_of(db: Database, day: date, r: IncentiveRules,
             accounts: Sequence[str] | None = None) -> pl.DataFrame:
    """account_id, customer_id, customer_class, low_income, on_time, late, broken, suspensions of
    every open account (or of the open ones among ``accounts``), from its collection events in
    the window (up to ``day``)."""
    import polars as pl

    from dianfei.customers.service import open_account_facts

    since = window_start(day, r.window_months)
    accts = open_account_facts(db.engine, accounts, names=False).select(
        "account_id", "customer_id", "customer_class", "low_income")
    per = repo.rating_facts(db.engine, since, day, paid=PAID, fee=FEE, broken=BROKEN,
                            stopped=STOPPED, later=LATER_IN_THE_DAY, accounts=accounts)
    # a bill's fee first accrues the day after its due date, after that day's rating: the
    # bills due yesterday or later count from tomorrow on (as LATER_IN_THE_DAY)
    late = repo.late_bills(db.engine, since, day - timedelta(days=1), accounts)
    counts = ("on_time", "late", "broken", "suspensions")
    return (accts.join(per, on="account_id", how="left").join(late, on="account_id", how="left")
            .select(*accts.columns, *[pl.col(c).fill_null(0) for c in counts]))


def late_facts_of(db: Database, day: date, r: IncentiveRules, accounts: Sequence[str],
                  stored: pl.DataFrame) -> pl.DataFrame:
    """:func:`facts_of` of ``accounts`` (open ones, each with a row in ``stored``: p_on_time,
    p_broken, p_suspensions of its rating) whose only fact that can have moved is the count of
    late bills: that count read again, the others carried."""
    import polars as pl

    from dianfei.customers.service import open_account_facts

    accts = open_account_facts(db.engine, accounts, names=False).select(
        "account_id", "customer_id", "customer_class", "low_income")
    late = repo.late_bills(db.engine, window_start(day, r.window_months), day - timedelta(days=1),
                           accounts)
    return (accts.join(stored.select("account_id", *[pl.col(f"p_{c}").alias(c) for c in
                                                     ("on_time", "broken", "suspensions")]),
                       on="account_id", how="inner")
            .join(late, on="account_id", how="left")
            .select("account_id", "customer_id", "customer_class", "low_income",
                    pl.col("on_time").cast(pl.Int64), pl.col("late").fill_null(0).cast(pl.Int64),
                    pl.col("broken").cast(pl.Int64), pl.col("suspensions").cast(pl.Int64)))


def rules_digest(r: IncentiveRules) -> str:
    """A fingerprint of the rules: a pass rated under other rules cannot be carried forward."""
    import hashlib

    return hashlib.sha256(repr(r).encode()).hexdigest()[:32]


def accounts_to_rate(db: Database, day: date,
                     r: IncentiveRules) -> tuple[set[str], set[str]] | None:
    """The accounts whose facts may differ from their stored rating on ``day``, when yesterday's
    (or today's) pass under the same rules lets the day carry the rest forward, as (recount,
    late_only): the accounts whose counts must be read from their events again, and those whose
    only possible change is the count of late bills (no fact event, nothing left the window: the
    other counts of their stored rating still hold); None when every
    open account must be rated: no such pass, a gap of days or changed rules. On the first of
    the month the set also holds what raises no collection event (:func:`reference_changes`:
    new accounts, changed low-income marks) — until session 21 that day re-rated every open
    account, twelve months of events each (2.2 s of the 20,000-account demo's day; the whole
    book's year of events at a million).

    A fact can change only through: a fact event dated from yesterday on (those recorded after
    yesterday's rating included), an event leaving the window (dated from the
    last window start to today's), or the count of late bills (an accrual opened since the pass,
    or one whose due date an edge of the window passed: ``late_count_moved``);
    and a payment recorded with an earlier date, queued by :func:`queue_for_rating` (the caller
    adds the queue)."""
    last = repo.last_rating_pass(db.engine)
    if last is None or last[1] != rules_digest(r):
        return None
    passed = last[0]
    if not (passed == day or passed == day - timedelta(days=1)):
        return None
    w = r.window_months
    # from yesterday on (the pass may be today's, when a day is run again): payments dated
    # earlier are queued by the consumer that records them
    spans = [(day - timedelta(days=1), day + timedelta(days=1)),
             (window_start(passed, w), window_start(day, w))]
    touched = repo.accounts_with_events(db.engine, FACT_EVENTS, spans)
    if day.day == 1:
        touched |= reference_changes(db, r)
    # the late count as :func:`facts_of` counts it: bills due in [window start, yesterday) —
    # on the day after a month's bills fell due, thousands whose first fee accrued, nothing else
    moved = repo.late_count_moved(
        db.engine, passed, (window_start(passed, w), passed - timedelta(days=1)),
        (window_start(day, w), day - timedelta(days=1)))
    return touched, moved - touched


def reference_changes(db: Database, r: IncentiveRules) -> set[str]:
    """The open accounts whose rating can have changed without a collection event: those never
    rated (opened since), and those whose stored facts rated with the customer's facts of today
    (the low-income mark: a low-income household is never a repeat defaulter) give another
    rating than the stored one. The rating is a pure function of the counts the rating row
    keeps and of the low-income mark (:func:`rate_frame`), so checking them takes two reads of
    the book's current rows, not its year of events. A changed customer class only chooses the
    proposal of an account that becomes a repeat defaulter, which is an event of its own."""
    import polars as pl

    from dianfei.customers.service import open_account_facts

    counts = ("on_time", "late", "broken", "suspensions")
    stored = repo.ratings(db.engine).select(
        "account_id", *counts, pl.col("grade").alias("s_grade"), pl.col("points").alias("s_points"),
        pl.col("repeat_defaulter").alias("s_rd"))
    now = open_account_facts(db.engine, names=False).select("account_id", "customer_id", "low_income")
    both = now.join(stored, on="account_id", how="left")
    unrated = both.filter(pl.col("s_grade").is_null())["account_id"].to_list()
    again = rate_frame(both.filter(pl.col("s_grade").is_not_null()), r).filter(
        (pl.col("grade") != pl.col("s_grade")) | (pl.col("points") != pl.col("s_points"))
        | (pl.col("repeat_defaulter") != pl.col("s_rd")))
    return set(unrated) | set(again["account_id"].to_list())


def queue_for_rating(conn: Any, accounts: Sequence[str]) -> None:
    """Accounts a fact was recorded for with a business date before the day (a payment in a bank
    file or an imported history): the next rating re-rates them (caller's transaction)."""
    repo.queue_for_rating(conn, accounts)


def rate_accounts(db: Database, day: date, *, clock: Clock,
                  incentive_rules: IncentiveRules | None = None,
                  full: bool = False) -> dict[str, int]:
    """The daily step: rate the open accounts; a changed grade is a ``rating_changed`` event; an
    account that becomes a repeat defaulter gets its proposal task. Idempotent per day.

    A day re-rates only the accounts whose facts may have changed since yesterday's pass
    (:func:`accounts_to_rate`; on the first of the month also new accounts and changed
    low-income marks), so its cost follows the day's events, not the book and its history;
    ``full`` re-rates every open account."""
    import polars as pl

    from dianfei.collections import repository
    from dianfei.collections.context import event_schema, write_events
    from dianfei.collections.tasks import open_task

    r = incentive_rules or rules()
    now = clock.now()
    with db.engine.connect() as conn:
        queued = sorted(repo.rating_queue(conn))
    subset = None if full else accounts_to_rate(db, day, r)
    todo = None if subset is None else sorted(subset[0] | subset[1] | set(queued))
    facts = ("points", "on_time", "late", "broken", "suspensions")
    prev = repo.ratings(db.engine, todo).select(
        "account_id", pl.col("grade").alias("p_grade"), pl.col("since").alias("p_since"),
        pl.col("repeat_defaulter").alias("p_rd"), *[pl.col(c).alias(f"p_{c}") for c in facts])
    if subset is None:
        rated = rate_frame(facts_of(db, day, r, None), r)
    else:
        # an account rated before whose only change can be its late count keeps its other
        # counts: its year of events is not read again (one never rated, or queued, is)
        late_only = (subset[1] - set(queued)) & set(prev["account_id"].to_list())
        recount = sorted(set(todo or ()) - late_only)
        parts = [facts_of(db, day, r, recount)] if recount or not late_only else []
        if late_only:
            parts.append(late_facts_of(db, day, r, sorted(late_only), prev))
        rated = rate_frame(pl.concat(parts), r)
    rows = (rated.join(prev, on="account_id", how="left")
            .with_columns(pl.when(pl.col("p_grade") == pl.col("grade")).then(pl.col("p_since"))
                          .otherwise(pl.lit(day)).alias("since"), pl.lit(day).alias("as_of")))
    # only what changed is written (``as_of``: the day the facts last changed), so a day costs
    # the accounts something happened to, not the whole book
    moved = rows.filter(pl.any_horizontal(
        pl.col("p_grade").is_null(), pl.col("p_rd") != pl.col("repeat_defaulter"),
        *[pl.col(f"p_{c}") != pl.col(c) for c in facts]))
    changed = rows.filter(pl.col("p_grade").is_not_null() & (pl.col("p_grade") != pl.col("grade")))
    became = rows.filter(pl.col("repeat_defaulter") & ~pl.col("p_rd").fill_null(False))
    counts = {"rated": rows.height, "ratings_written": moved.height, "rating_changes": changed.height,
              "repeat_defaulters": 0, "proposals": 0, "full_pass": int(todo is None)}
    with db.session() as s:
        conn = s.connection()
        # a rated account's row is updated in place (its pages only, not the grade index's
        # unless the grade moved); an account rated for the first time is inserted
        stored = moved.select("account_id", "customer_id", "grade", "points", "on_time", "late",
                              "broken", "suspensions", "repeat_defaulter", "as_of", "since")
        first = moved["p_grade"].is_null()
        repository.update_rows(conn, "credit_ratings", "account_id", stored.filter(~first))
        repository.replace_rows(conn, "credit_ratings", "account_id", stored.filter(first))
        # the day's rating changes as columns (a hundred thousand on a day a tenth of a
        # million accounts first count as late): no Python object per change
        events = changed.select(
            pl.format("rate:{}:{}", "account_id", pl.lit(day.isoformat())).alias("key"),
            "account_id", "customer_id", pl.lit("rating_changed").alias("type"),
            pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("at"),
            pl.lit(day).alias("business_date"), pl.col("grade").alias("level"),
            pl.struct(pl.col("p_grade").alias("from"), pl.col("grade").alias("to"), "points",
                      "repeat_defaulter").struct.json_encode().alias("detail"))
        have = repository.existing_keys(conn, "collection_events", events["key"].to_list())
        write_events(conn, events.filter(~pl.col("key").is_in(list(have))).select(
            [pl.col(c) if c in events.columns else pl.lit(None).cast(t).alias(c)
             for c, t in event_schema().items()]).cast(event_schema()))
        for c in became.iter_rows(named=True):
            kind = r.proposal_for(c["customer_class"])
            open_task(s, account_id=c["account_id"], kind=kind, opened_by="daily run", clock=clock,
                      key=f"incent:{c['account_id']}:{kind}:{day.isoformat()}",
                      detail={"grade": c["grade"], "points": c["points"], "late": c["late"],
                              "broken": c["broken"], "suspensions": c["suspensions"]})
            counts["proposals"] += 1
        # the queued accounts are rated now (a full pass rates them too)
        repo.clear_rating_queue(conn, queued)
        repo.record_rating_pass(conn, day, rules_digest(r), todo is None, rows.height)
        counts["repeat_defaulters"] = repo.repeat_defaulter_count(conn)
    return counts


def with_repeat_defaulters(engine: Engine, snapshot: pl.DataFrame) -> pl.DataFrame:
    """The dunning snapshot with ``segment`` = ``repeat_defaulter`` for the standard-segment
    accounts rated so (low-income households keep their own ladder)."""
    import polars as pl

    rd = repo.repeat_defaulters(engine)["account_id"].to_list()
    if not rd:
        return snapshot
    return snapshot.with_columns(
        pl.when((pl.col("segment") == "standard") & pl.col("account_id").is_in(rd))
        .then(pl.lit("repeat_defaulter")).otherwise(pl.col("segment")).alias("segment"))


# -- reading ---------------------------------------------------------------------------------------


def _rating_json(r: Mapping[str, Any]) -> dict[str, Any]:
    return {"account": r["customer_id"], "account_id": r["account_id"], "grade": r["grade"],
            "points": int(r["points"]), "on_time": int(r["on_time"]), "late": int(r["late"]),
            "broken": int(r["broken"]), "suspensions": int(r["suspensions"]),
            "repeat_defaulter": bool(r["repeat_defaulter"]), "as_of": r["as_of"].isoformat(),
            "since": r["since"].isoformat()}


def rating_of(engine: Engine, account_id: str) -> dict[str, Any]:
    """The account's rating as the portal shows it; NotFoundError when not rated yet."""
    import polars as pl

    found = repo.ratings(engine).filter(pl.col("account_id") == account_id)
    if found.height == 0:
        raise NotFoundError(f"account {account_id} has no credit rating yet (rated by the daily "
                            "collections run)")
    return _rating_json(found.row(0, named=True))


def ratings_json(engine: Engine, *, grade: str | None = None,
                 repeat_defaulters: bool = False) -> list[dict[str, Any]]:
    import polars as pl

    frame = repo.ratings(engine)
    if grade is not None:
        known = [g for g, _ in rules().grades]
        if grade not in known:
            raise ValidationError(f"grade must be one of {', '.join(known)}, got {grade!r}")
        frame = frame.filter(pl.col("grade") == grade)
    if repeat_defaulters:
        frame = frame.filter(pl.col("repeat_defaulter"))
    return [_rating_json(r) for r in frame.iter_rows(named=True)]


def bill_document_ratings(engine: Engine, accounts: Sequence[str], period: Any
                          ) -> dict[str, dict[str, str]]:
    """Billing's rating hook: per account its grade, points and the day it was rated, as
    strings (accounts not rated yet are left out: the bill then shows no rating)."""
    with engine.connect() as conn:
        rows = repo.rating_rows(conn, list(accounts))
    return {str(a): {"grade": str(g), "points": str(p), "as_of": str(d)[:10]}
            for a, g, p, d, _since, _rd in rows}


def report(engine: Engine) -> list[dict[str, Any]]:
    """Per dunning segment (standard, low_income, repeat_defaulter): accounts rated, how many per
    grade, average points (2 decimals, string), deposit / prepayment proposals open and done."""
    import polars as pl

    from dianfei.customers.service import open_account_facts

    r = rules()
    low = open_account_facts(engine, names=False).select("account_id", "low_income")
    rated = repo.ratings(engine).join(low, on="account_id", how="left").with_columns(
        pl.when(pl.col("low_income").fill_null(False)).then(pl.lit("low_income"))
        .when(pl.col("repeat_defaulter")).then(pl.lit("repeat_defaulter"))
        .otherwise(pl.lit("standard")).alias("segment"))
    tasks = repo.task_counts(engine, PROPOSAL_KINDS).join(
        rated.select("account_id", "segment"), on="account_id", how="left")
    out = []
    for seg in ("standard", "low_income", "repeat_defaulter"):
        part = rated.filter(pl.col("segment") == seg)
        t = tasks.filter(pl.col("segment") == seg)
        mean = part["points"].mean() if part.height else None
        out.append({
            "segment": seg, "accounts": part.height,
            "grades": {g: int((part["grade"] == g).sum()) for g, _ in r.grades},
            "average_points": f"{mean:.2f}" if isinstance(mean, int | float) else None,
            "proposals": {k: {s: int(t.filter((pl.col("kind") == k) & (pl.col("status") == s))
                                     ["tasks"].sum()) for s in ("open", "done")}
                          for k in PROPOSAL_KINDS}})
    return out
