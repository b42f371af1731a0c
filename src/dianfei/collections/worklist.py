"""Daily worklists (催费工作清单): every account the dunning ladder sends to a collector is on exactly
one collector's list that day, ranked by expected recovery and explained in words.

An account is on the day's lists when it has an open ``collection_tasks`` row of a collector-bound
kind (``task_kinds`` in ``assignment.toml``: ``collector_visit`` today; ``plan_offer``, promise
follow-ups … are one line of data away). ``worklist_entries`` is keyed (day, account_id), so an
account can never be on two lists of a day.

- :func:`build_worklists` — the day's lists (the end of ``run_day``; ``dianfei worklist --date``
  when a day has none). Idempotent: accounts already listed that day stay where they are (a
  reassignment is never undone by a re-run); accounts whose task opened since are added.
  Ranking and assignment are the column arithmetic of :mod:`dianfei.collections.assignment`;
  the probability of paying is 1 − the risk score's probability of not paying, from
  ``dianfei.risk.service.scorer_for`` (the trained model when there is one, else the points).
- :func:`reassign` — one account, or all of a collector's list, to another active collector;
- :func:`balance_worklists` — collectors over capacity hand their lowest-ranked rows to the
  least-loaded active collectors of their station;
- :func:`supervisor_view` — per collector: list size, worked, paid after assignment, recovered;
- :func:`set_roster` / :func:`collector_of` — the roster (active, languages, capacity, the user
  who signs in as the collector; see ``worklist_models`` for why collections owns it).

Every staff decision here (roster change, reassignment, balancing) and each build go into the
audit chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dianfei.collections import assignment
from dianfei.collections import worklist_repository as repo
from dianfei.core.clock import Clock, start_of_day
from dianfei.core.errors import NotFoundError, ValidationError
from dianfei.core.money import fmt_yuan

if TYPE_CHECKING:
    import polars as pl

    from dianfei.db.engine import Database
    from dianfei.risk.service import RiskScorer

    #: the late-payment history of the accounts given (``Context.late_history``)
    HistoryOf = Callable[[Sequence[str]], pl.DataFrame]


def rules_for(db: Database) -> assignment.Rules:
    """The assignment rules: ``[collections] assignment_file`` when set, else the packaged file."""
    section = (db.settings.raw or {}).get("collections") or {}
    path = section.get("assignment_file")
    return assignment.load_rules(Path(path) if path else None)


# -- roster ------------------------------------------------------------------------------------


def roster_frame(db: Database, rules: assignment.Rules | None = None) -> pl.DataFrame:
    """Every collector (customers service) with the roster's facts: collector_id, name,
    station_id, active, languages, capacity, username."""
    import polars as pl

    from dianfei.customers.service import collectors

    cap = (rules or rules_for(db)).default_capacity
    return (collectors(db.engine).join(repo.roster(db.engine), on="collector_id", how="left")
            .with_columns(pl.col("active").fill_null(True),
                          pl.col("daily_capacity").fill_null(cap).alias("capacity"))
            .select("collector_id", "name", "station_id", "active", "languages", "capacity",
                    "username"))


def set_roster(db: Database, collector_id: str, *, by: str, active: bool | None = None,
               languages: list[str] | None = None, capacity: int | None = None,
               username: str | None = None) -> dict[str, Any]:
    """Change a collector's roster facts (what is not given stays); audited."""
    from dianfei.audit import service as audit
    from dianfei.customers.service import collectors

    if collector_id not in set(collectors(db.engine)["collector_id"].to_list()):
        raise NotFoundError(f"collector {collector_id!r}: no such collector")
    if capacity is not None and capacity < 0:
        raise ValidationError(f"capacity must be ≥ 0, got {capacity}")
    with db.engine.begin() as conn:
        row = repo.roster_row(conn, collector_id)
        values = {"collector_id": collector_id,
                  "active": bool(row.active) if row is not None else True,
                  "languages": row.languages if row is not None else None,
                  "daily_capacity": row.daily_capacity if row is not None else None,
                  "username": row.username if row is not None else None}
        if active is not None:
            values["active"] = active
        if languages is not None:
            values["languages"] = ",".join(sorted({x.strip() for x in languages if x.strip()})) or None
        if capacity is not None:
            values["daily_capacity"] = capacity
        if username is not None:
            other = repo.collector_of_username(conn, username)
            if other is not None and other != collector_id:
                raise ValidationError(f"user {username!r} already signs in as collector {other!r}")
            values["username"] = username or None
        repo.upsert_roster(conn, values)
        audit.record(conn, "collector.roster", collector_id, {**values, "by": by})
    return values


def collector_of(db: Database, user: Any) -> str | None:
    """The collector id a user (a ``Principal`` or a user name) signs in as, else None."""
    username = user if isinstance(user, str) else getattr(user, "username", None)
    if not username:
        return None
    with db.engine.connect() as conn:
        return repo.collector_of_username(conn, username)


# -- building ----------------------------------------------------------------------------------


def risk_features(db: Database, arrears: pl.DataFrame, day: date,
                  history: HistoryOf | None = None) -> pl.DataFrame:
    """The risk features (account_id, arrears, late_count, avg_days_late, broken_plans) of
    ``arrears`` (account_id, amount_overdue), as the daily run's snapshot builds them
    (``history``: the daily run's ``Context.late_history``, the last 365 days of the accounts
    asked for)."""
    import polars as pl

    from dianfei.collections import repository
    from dianfei.collections.segments import HISTORY_DAYS, RECENT_DAYS

    accounts = arrears["account_id"].to_list()
    hist = (history(accounts) if history is not None
            else repository.late_history_of(db.engine, accounts,
                                            day - timedelta(days=HISTORY_DAYS),
                                            day - timedelta(days=RECENT_DAYS), day))
    return (arrears.select("account_id", pl.col("amount_overdue").alias("arrears"))
            .join(hist, on="account_id", how="left")
            .join(repository.broken_plans(db.engine), on="account_id", how="left"))


def gather(db: Database, day: date, rules: assignment.Rules,
           scorer: RiskScorer | None = None, overdue: pl.DataFrame | None = None,
           history: HistoryOf | None = None) -> pl.DataFrame:
    """One row per account with an open collector-bound task: account_id, customer_id,
    task_kinds, amount_overdue, days_overdue, p_default, risk_reasons and the customer's
    station_id, region_id, customer_class, language, collector_id (its own). ``overdue``: the
    day's overdue items when the caller has just read them (``service.overdue_items``)."""
    import polars as pl

    from dianfei.collections.service import broken_plan_dates, overdue_items
    from dianfei.customers.service import assignment_facts
    from dianfei.risk.service import scorer_for

    tasks = repo.open_tasks(db.engine, rules.task_kinds, start_of_day(day + timedelta(days=1)))
    per = (tasks.group_by("account_id").agg(
        pl.col("customer_id").first(),
        pl.col("kind").unique().sort().str.join(",").alias("task_kinds")))
    if per.height == 0:
        return per
    items = (overdue if overdue is not None else overdue_items(db.engine, day)).filter(
        (pl.col("due_on") < day) & (pl.col("open_amount") > 0)
        & pl.col("account_id").is_in(per["account_id"].implode()))
    owed = items.group_by("account_id").agg(
        pl.col("open_amount").sum().alias("amount_overdue"),
        (pl.lit(day) - pl.col("due_on").min()).dt.total_days().alias("days_overdue"))
    work = (per.join(owed, on="account_id", how="left")
            .with_columns(pl.col("amount_overdue").fill_null(0).cast(pl.Int64),
                          pl.col("days_overdue").fill_null(0).cast(pl.Int64)))
    scores = (scorer or scorer_for(db, day, plans=lambda: broken_plan_dates(db))).score(
        risk_features(db, work, day, history))
    facts = assignment_facts(db.engine, work["account_id"].to_list()).drop("customer_id")
    return (work.join(scores.select("account_id",
                                    (pl.col("score").cast(pl.Float64) / 100).alias("p_default"),
                                    pl.col("reasons").alias("risk_reasons")),
                      on="account_id", how="left")
            .join(facts, on="account_id", how="left"))


def plan(work: pl.DataFrame, roster: pl.DataFrame, rules: assignment.Rules, day: date,
         now: datetime, base_load: dict[str, int] | None = None) -> pl.DataFrame:
    """The worklist rows of ``work`` (see :func:`gather`): ranked, assigned, explained — the
    column arithmetic, without the database (benchmarked by ``bench.worklist``)."""
    import polars as pl

    ranked = assignment.rank(work, rules)
    assigned = assignment.assign(ranked, roster, rules, base_load)
    return assigned.select(
        pl.lit(day).alias("day"), "account_id", "customer_id", "collector_id", "station_id",
        "region_id", "amount_overdue", "days_overdue", "pay_probability", "expected", "reason",
        "rule", "task_kinds", pl.lit(now).alias("assigned_at"),
        pl.lit(None, pl.String).alias("moved_from")).cast(repo.entry_schema())


def build_worklists(db: Database, day: date, *, clock: Clock,
                    rules: assignment.Rules | None = None,
                    scorer: RiskScorer | None = None,
                    overdue: pl.DataFrame | None = None,
                    history: HistoryOf | None = None) -> dict[str, Any]:
    """Build (or complete) the day's worklists; returns day, accounts (on the lists now), added,
    collectors. Refused, storing nothing, when a rule names an inactive collector. ``overdue``:
    the day's overdue items, ``history`` its late-payment history, when the caller (the daily
    run) has them already."""

    from dianfei.audit import service as audit
    from dianfei.db.bulk import write_frame

    r = rules or rules_for(db)
    work = gather(db, day, r, scorer, overdue, history)
    with db.engine.begin() as conn:
        have = repo.entries(conn, day, day)
        fresh = work.join(have.select("account_id"), on="account_id", how="anti") if work.height \
            else work
        added = 0
        collectors = set(have["collector_id"].to_list())
        if fresh.height:
            load = dict(have.group_by("collector_id").len().iter_rows()) if have.height else {}
            rows = plan(fresh, roster_frame(db, r), r, day, clock.now(), load)
            added = write_frame(conn, "worklist_entries", rows)
            audit.record(conn, "worklist.built", day.isoformat(), {
                "added": added, "collectors": rows["collector_id"].n_unique(),
                "rules": sorted(set(rows["rule"].to_list()))})
            collectors |= set(rows["collector_id"].to_list())
    total = have.height + added
    return {"day": day.isoformat(), "accounts": total, "added": added,
            "collectors": len(collectors)}


# -- reading -----------------------------------------------------------------------------------


def _ranked(db: Database, first: date, last: date, collector: str | None) -> pl.DataFrame:
    import polars as pl

    entries = repo.entries(db.engine, first, last)
    if entries.height == 0:
        return entries.with_columns(pl.lit(0, pl.Int64).alias("rank"))
    out = pl.concat([assignment.with_ranks(g) for _, g in entries.group_by("day")])
    if collector is not None:
        out = out.filter(pl.col("collector_id") == collector)
    return out.sort("day", "collector_id", "rank")


def worklists(db: Database, day: date, *, collector: str | None = None,
              clock: Clock | None = None, top: int | None = None) -> list[dict[str, Any]]:
    """The day's lists as ``dianfei worklist --json`` prints them: collector, account (the
    customer id), account_id, rank (1, 2, … within each collector), overdue_amount (yuan),
    days_overdue, pay_probability, expected_recovery, reason, rule, station, region, task_kinds,
    moved_from, contact_flag (open contact-data flags, null when none), phone_verified, segment
    and segment_label (the risk segment, collections/segments.py; null for a closed account). Built
    first when ``clock`` is given and the day has none. ``top``: only the first ``top`` of each
    collector's list (what a day in the field reaches); the rest is not looked up."""
    with db.engine.connect() as conn:
        empty = not repo.has_entries(conn, day)
    if empty and clock is not None:
        build_worklists(db, day, clock=clock)
    from dianfei.collections.contacts import contact_status

    names = dict(roster_frame(db).select("collector_id", "name").iter_rows())
    ranked = _ranked(db, day, day, collector)
    if top is not None:
        ranked = ranked.filter(ranked["rank"] <= top)
    # contact quality beside each row: a flagged number is called last, or visited instead
    contact = {r["account_id"]: r for r in contact_status(
        db.engine, ranked["account_id"].to_list()).iter_rows(named=True)} if ranked.height else {}
    # the risk segment (客户分类) the ladder read that day: a hardship household or a strategic
    # customer is approached differently at the door
    from dianfei.collections.segments import account_segments

    segment = {r["account_id"]: r for r in account_segments(
        db, day, ranked["account_id"].to_list()).iter_rows(named=True)} if ranked.height else {}
    out = []
    for r in ranked.iter_rows(named=True):
        c = contact.get(r["account_id"], {})
        g = segment.get(r["account_id"], {})
        out.append({"collector": r["collector_id"], "collector_name": names.get(r["collector_id"]),
                    "account": r["customer_id"], "account_id": r["account_id"], "rank": r["rank"],
                    "overdue_amount": fmt_yuan(r["amount_overdue"]),
                    "days_overdue": r["days_overdue"],
                    "pay_probability": round(r["pay_probability"], 2),
                    "expected_recovery": fmt_yuan(r["expected"]), "reason": r["reason"],
                    "rule": r["rule"], "station": r["station_id"], "region": r["region_id"],
                    "task_kinds": r["task_kinds"].split(","), "moved_from": r["moved_from"],
                    "contact_flag": c.get("contact_flag"),
                    "phone_verified": bool(c.get("phone_verified")),
                    "segment": g.get("risk_segment"), "segment_label": g.get("segment_label"),
                    "timeline": f"/api/v1/accounts/{r['account_id']}/timeline"})
    return out


# -- reassignment and balancing ----------------------------------------------------------------


def _active_target(db: Database, to: str, what: str) -> None:
    import polars as pl

    roster = roster_frame(db)
    row = roster.filter(pl.col("collector_id") == to)
    if row.height == 0:
        raise NotFoundError(f"{what}: collector {to!r} does not exist")
    if not row["active"][0]:
        raise ValidationError(f"{what}: collector {to!r} is inactive and cannot take accounts")


def reassign(db: Database, day: date, *, to: str, by: str, reason: str,
             account_id: str | None = None, from_collector: str | None = None) -> dict[str, Any]:
    """Move one account (``account_id``) or all of a collector's list (``from_collector``) of
    ``day`` to collector ``to``. Repeating it moves nothing more (moved 0). Audited."""
    import polars as pl

    from dianfei.audit import service as audit

    if (account_id is None) == (from_collector is None):
        raise ValidationError("reassignment: name exactly one of an account or a collector")
    if not reason.strip():
        raise ValidationError("reassignment: a reason is required")
    _active_target(db, to, "reassignment")
    if from_collector is not None and roster_frame(db).filter(
            pl.col("collector_id") == from_collector).height == 0:
        raise NotFoundError(f"reassignment: collector {from_collector!r} does not exist")
    with db.engine.begin() as conn:
        if not repo.has_entries(conn, day):
            raise NotFoundError(f"no worklists for {day}: build them first")
        if account_id is not None:
            row = repo.entry(conn, day, account_id)
            if row is None:
                raise NotFoundError(f"account {account_id!r} is on no worklist of {day}")
            accounts = [] if row.collector_id == to else [account_id]
            source = str(row.collector_id)
        else:
            assert from_collector is not None
            if from_collector == to:
                raise ValidationError(f"reassignment: {to!r} is both the source and the target")
            accounts = repo.entries(conn, day, day, from_collector)["account_id"].to_list()
            source = from_collector
        moved = repo.move(conn, day, accounts, to)
        if moved:
            audit.record(conn, "worklist.reassigned", account_id or from_collector or "", {
                "day": day.isoformat(), "from": source, "to": to, "accounts": sorted(accounts),
                "by": by, "reason": reason})
    return {"day": day.isoformat(), "from": source, "to": to, "moved": moved}


def balance_worklists(db: Database, day: date, *, by: str,
                      rules: assignment.Rules | None = None) -> dict[str, Any]:
    """Bring collectors of ``day`` within capacity (see :func:`assignment.balance`); audited."""
    import polars as pl

    from dianfei.audit import service as audit

    roster = roster_frame(db, rules)
    with db.engine.begin() as conn:
        entries = repo.entries(conn, day, day)
        if entries.height == 0:
            raise NotFoundError(f"no worklists for {day}: build them first")
        moves = assignment.balance(entries, roster)
        for (to,), grp in moves.group_by(["to_collector"], maintain_order=True):
            repo.move(conn, day, grp["account_id"].to_list(), str(to))
        if moves.height:
            pairs = (moves.group_by("from_collector", "to_collector").len()
                     .sort("from_collector", "to_collector"))
            audit.record(conn, "worklist.balanced", day.isoformat(), {
                "by": by, "moved": moves.height,
                "pairs": [list(p) for p in pairs.iter_rows()],
                "accounts": sorted(moves["account_id"].to_list())})
        after = (repo.entries(conn, day, day).group_by("collector_id").len()
                 .join(roster.select("collector_id", "capacity", "active"), on="collector_id",
                       how="left")
                 .filter(pl.col("len") > pl.when(pl.col("active")).then(pl.col("capacity"))
                         .otherwise(0)))
    return {"day": day.isoformat(), "moved": moves.height,
            "moves": [{"account_id": a, "from": f, "to": t} for a, f, t in moves.iter_rows()],
            "still_over_capacity": sorted(after["collector_id"].to_list())}


# -- supervisor view ---------------------------------------------------------------------------


def supervisor_view(db: Database, first: date, last: date, *,
                    collector: str | None = None) -> dict[str, Any]:
    """Per collector (and per station and region of the accounts) for days ``first``..``last``:
    list_size (rows over the days), accounts, worked (accounts with a task done or a visit
    recorded since assignment), visits, paid (accounts that paid since assignment), recovered
    (yuan paid since assignment)."""
    import polars as pl

    from dianfei.payments.service import paid_since

    if last < first:
        raise ValidationError(f"range: {first} is after {last}")
    entries = repo.entries(db.engine, first, last, collector)
    empty: dict[str, Any] = {"from": first.isoformat(), "to": last.isoformat(), "collectors": [],
                             "stations": [], "regions": []}
    if entries.height == 0:
        return empty
    end = start_of_day(last + timedelta(days=1))
    # an account listed on several days counts once per collector, from its first assignment
    acc = entries.group_by("collector_id", "account_id").agg(
        pl.col("assigned_at").min().alias("since"), pl.col("station_id").first(),
        pl.col("region_id").first(), pl.len().alias("rows"))
    ids = acc["account_id"].unique().to_list()
    tasks = repo.tasks_of_accounts(db.engine, ids).filter(
        (pl.col("status") == "done") & pl.col("done_at").is_not_null())
    visits = repo.visits_between(db.engine, ids, start_of_day(first), end)
    done = (acc.join(tasks.select("account_id", "done_at"), on="account_id")
            .filter((pl.col("done_at") >= pl.col("since")) & (pl.col("done_at") < end))
            .select("collector_id", "account_id").unique())
    seen = (acc.join(visits.select("account_id", "at"), on="account_id")
            .filter(pl.col("at") >= pl.col("since"))
            .group_by("collector_id", "account_id").agg(pl.len().alias("visits")))
    paid = paid_since(db.engine, acc.select("account_id", "since").unique()).group_by(
        "account_id", "since").agg(pl.col("paid").first())
    full = (acc.join(paid, on=["account_id", "since"], how="left")
            .join(seen, on=["collector_id", "account_id"], how="left")
            .join(done.with_columns(pl.lit(True).alias("task_done")),
                  on=["collector_id", "account_id"], how="left")
            .with_columns(pl.col("paid").fill_null(0), pl.col("visits").fill_null(0),
                          (pl.col("task_done").fill_null(False) | (pl.col("visits").fill_null(0) > 0))
                          .alias("worked")))

    def totals(keys: list[str]) -> list[dict[str, Any]]:
        g = (full.group_by(keys).agg(
            pl.col("rows").sum().alias("list_size"), pl.len().alias("accounts"),
            pl.col("worked").sum().alias("worked"), pl.col("visits").sum().alias("visits"),
            (pl.col("paid") > 0).sum().alias("paid"), pl.col("paid").sum().alias("recovered"))
            .sort(keys, nulls_last=True))
        return [{**{k.removesuffix("_id"): r[k] for k in keys},
                 "list_size": r["list_size"], "accounts": r["accounts"], "worked": r["worked"],
                 "visits": r["visits"], "paid": r["paid"], "recovered": fmt_yuan(r["recovered"])}
                for r in g.iter_rows(named=True)]

    names = dict(roster_frame(db).select("collector_id", "name").iter_rows())
    per = totals(["collector_id"])
    for row in per:
        row["name"] = names.get(row["collector"])
    return {"from": first.isoformat(), "to": last.isoformat(), "collectors": per,
            "stations": totals(["station_id"]), "regions": totals(["region_id"])}


def ever_listed_for(db: Database, collector: str, account_id: str) -> bool:
    """Whether ``account_id`` has been on ``collector``'s list on any day (what a collector may
    open the timeline of)."""
    if not collector:
        return False
    rows = repo.entries_of_account(db.engine, account_id)
    return collector in set(rows["collector_id"].to_list())
