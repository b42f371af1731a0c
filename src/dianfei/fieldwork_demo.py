"""The demo's collectors at work (催费员外勤): each working day they take the top of their
worklists, call or visit, and record what the customer said — through the same services as the
``dianfei visit``, ``plan`` and ``ticket`` commands.

What the customer says comes from the simulator (``sim.fieldwork``), which knows the customer's
hidden behaviour and the payments already coming: a true promise is kept by a payment the
simulator had scheduled, talk is broken; hardship gets the policy's suggested pay plan (approved
by the supervisor where the policy says so), whose instalments the simulator then pays — all of
them, or only the down payment, by behaviour; a dispute opens a ticket that the supervisor
decides a few working days later; some customers answer the satisfaction survey. The
collections day that follows sees the promises kept and broken, the plans kept and broken, and
the disputed bills paused and resumed, exactly as it would in a branch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING, Any

from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.core.errors import ConflictError, ValidationError
from dianfei.core.money import parse_decimal, to_fen

if TYPE_CHECKING:
    import polars as pl
    from sqlalchemy.orm import Session

    from dianfei.db.engine import Database

#: accounts a collector works in a day (calls and visits), from the top of the list
VISITS_PER_DAY = 6
#: the supervisor who approves plans and decides tickets in the demo
SUPERVISOR = "demo:supervisor"


@dataclass
class FieldworkReport:
    """What the demo's collectors did in a day (the demo summary reads the same from the
    collection events, so that a resumed demo counts every run)."""

    visits: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    plans_agreed: int = 0
    plans_refused_by_policy: int = 0
    tickets_decided: int = 0
    surveys: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"visits": self.visits, "outcomes": dict(sorted(self.outcomes.items())),
                "plans_agreed": self.plans_agreed,
                "plans_refused_by_policy": self.plans_refused_by_policy,
                "tickets_decided": self.tickets_decided, "surveys": self.surveys}


def _fen(yuan: str) -> int:
    return to_fen(parse_decimal(str(yuan), "overdue_amount", places=2, allow_negative=False))


def _oldest_bills(db: Database, day: date, accounts: list[str]) -> dict[str, str]:
    import polars as pl

    from dianfei.payments.service import open_items

    # the visited accounts' open items only (the day's overdue book is read once, by the ladder)
    items = open_items(db.engine, accounts).filter(
        (pl.col("item_kind") == "bill") & (pl.col("due_on") < day))
    first = items.sort("due_on", "bill_id").group_by("account_id", maintain_order=True).first()
    return dict(zip(first["account_id"].to_list(), first["bill_id"].to_list(), strict=True))


def fieldwork_day(db: Database, utility: Any, day: date,
                  queue: pl.DataFrame | None) -> tuple[FieldworkReport, pl.DataFrame]:
    """One working day of the collectors; returns what they did and the payments the plans they
    agreed add to the simulator's queue (paid_on, channel, transaction_id, account_id, amount,
    in_full)."""
    import polars as pl

    from dianfei.collections.service import working_days
    from dianfei.collections.worklist import worklists
    from dianfei.sim.fieldwork import visit_outcomes

    report = FieldworkReport()
    none = pl.DataFrame(schema={"paid_on": pl.Date, "channel": pl.String,
                                "transaction_id": pl.String, "account_id": pl.String,
                                "amount": pl.Int64, "in_full": pl.Boolean})
    if not working_days()(day):
        return report, none
    report.tickets_decided = _decide_tickets(db, utility, day)
    rows = worklists(db, day, top=VISITS_PER_DAY)
    if not rows:
        return report, none
    worked = pl.DataFrame({
        "customer_id": [r["account"] for r in rows], "account_id": [r["account_id"] for r in rows],
        "collector_id": [r["collector"] for r in rows],
        "overdue": [_fen(r["overdue_amount"]) for r in rows]},
        schema={"customer_id": pl.String, "account_id": pl.String, "collector_id": pl.String,
                "overdue": pl.Int64})
    scheduled = (queue.filter(pl.col("account_id").is_in(worked["account_id"].implode()))
                 .select("account_id", "paid_on", "amount") if queue is not None
                 else pl.DataFrame(schema={"account_id": pl.String, "paid_on": pl.Date,
                                           "amount": pl.Int64}))
    outcomes = visit_outcomes(utility, day, worked, scheduled)
    bills = _oldest_bills(db, day, worked["account_id"].to_list())
    added: list[dict[str, Any]] = []
    # the day's contacts are stored in one unit of work, through the service a collector's app
    # calls (record_visits: the day's visits checked together, then stored): the demo would
    # otherwise pay a commit (and its WAL pages) for each of a county's hundred visits a day,
    # two years long. Every visit keeps its own retry key, so a demo killed in the middle of the
    # day records them all again when resumed.
    with db.session() as s:
        rows = list(outcomes.iter_rows(named=True))
        done = _record(s, day, rows, bills, report)
        for i, (r, outcome) in enumerate(zip(rows, done, strict=True)):
            if outcome == "hardship":
                clock = FixedClock(_visit_at(day, i) + timedelta(minutes=5))
                added.extend(_offer_plan(s, utility, day, r, clock, report))
    return report, (pl.DataFrame(added, schema=none.schema) if added else none)


def _visit_at(day: date, i: int) -> datetime:
    """When the day's ``i``-th contact took place (every twenty minutes from 10:00)."""
    return datetime.combine(day, time(10), tzinfo=BUSINESS_TZ) + timedelta(minutes=20 * i)


def _record(s: Session, day: date, rows: list[dict[str, Any]], bills: dict[str, str],
            report: FieldworkReport) -> list[str]:
    """Record the day's contacts (a promise the policy would refuse is made to fit it, as a
    collector would ask for a little more or a little sooner) and the surveys some customers
    answer; returns the outcome recorded for each."""
    from dianfei.collections.fieldwork_rules import fieldwork_policy
    from dianfei.collections.service import amounts_due
    from dianfei.collections.surveys import record_survey
    from dianfei.collections.visits import VisitRequest, record_visits

    pol = fieldwork_policy()
    promised = sorted({r["account_id"] for r in rows if r["outcome"] == "promise"})
    owed_now = amounts_due(s.connection(), promised) if promised else {}
    requests, outcomes = [], []
    for i, r in enumerate(rows):
        outcome = str(r["outcome"])
        promise_on, amount = r["promise_on"], r["promise_fen"]
        bill_id = bills.get(r["account_id"])
        if outcome == "dispute" and bill_id is None:
            outcome = "refused"  # nothing billed to dispute (only late fees are open)
        if outcome == "promise":
            owed = max(owed_now.get(r["account_id"], 0), 0)
            least = int((Decimal(owed) * pol.promise_min_share).to_integral_value(ROUND_CEILING))
            amount = max(int(amount or 0), least, 1)
            promise_on = min(max(promise_on, day), day + timedelta(days=pol.promise_max_days))
            if owed <= 0:
                outcome = "paid"
        outcomes.append(outcome)
        requests.append(VisitRequest(
            request_id=f"demo:{day}:{r['account_id']}", account_id=r["account_id"],
            collector_id=r["collector_id"], channel=r["channel"], outcome=outcome,
            at=_visit_at(day, i), recorded_by=f"demo:{r['collector_id']}",
            promise_on=promise_on if outcome == "promise" else None,
            promise_amount_fen=amount if outcome == "promise" else None,
            bill_id=bill_id if outcome == "dispute" else None))
    # recorded at the last contact's time (each contact's own time is its ``at``)
    clock = FixedClock(_visit_at(day, len(rows) - 1) + timedelta(minutes=5))
    recorded = record_visits(s, requests, clock=clock, policy=pol)
    for i, (r, done, outcome) in enumerate(zip(rows, recorded, outcomes, strict=True)):
        if r["survey"] is not None and not done.replayed:
            record_survey(s, request_id=f"demo:survey:{done.visit.visit_id}", subject="visit",
                          subject_id=done.visit.visit_id, score=int(r["survey"]),
                          recorded_by="demo:survey",
                          clock=FixedClock(_visit_at(day, i) + timedelta(minutes=5)))
            report.surveys += 1
        report.visits += 1
        report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
    return outcomes


def _offer_plan(s: Session, utility: Any, day: date, r: dict[str, Any], clock: FixedClock,
                report: FieldworkReport) -> list[dict[str, Any]]:
    """Hardship: the policy's suggested pay plan, approved by the supervisor when required; the
    simulator pays its instalments (all of them when the household keeps it, else only the down
    payment). A plan the policy refuses (too little to spread) is counted; an account whose plan
    is already open is not offered another."""
    from dianfei.collections.service import approve_plan, propose_plan, suggest_schedule

    # a refused plan leaves nothing behind, and the day's visits recorded before it stand
    try:
        with s.begin_nested():
            sug = suggest_schedule(s, account_id=r["account_id"], kind="pay_plan", clock=clock)
            plan = propose_plan(
                s, account_id=r["account_id"], kind="pay_plan",
                down_payment_fen=int(sug["down_payment_fen"]),
                instalments=[(date.fromisoformat(i["due_on"]), int(i["amount_fen"]))
                             for i in sug["instalments"]],
                requested_by=f"demo:{r['collector_id']}", clock=clock,
                request_key=f"demo:plan:{day}:{r['account_id']}")
    except ConflictError:  # a plan is already open (agreed on an earlier visit)
        return []
    except ValidationError:
        report.plans_refused_by_policy += 1
        return []
    if plan.status == "proposed":
        approve_plan(s, plan.plan_id, SUPERVISOR, clock)
    report.plans_agreed += 1
    pays = [(date.fromisoformat(sug["down_payment_due_on"]), int(sug["down_payment_fen"]))]
    if r["plan_kept"]:
        pays += [(date.fromisoformat(i["due_on"]), int(i["amount_fen"])) for i in sug["instalments"]]
    channel = utility.customers.filter(
        utility.customers["customer_id"] == r["customer_id"])["preferred_channel"].item()
    from dianfei.demo import SIM_CHANNELS

    return [{"paid_on": on, "channel": SIM_CHANNELS.get(channel, "counter"),
             "transaction_id": f"DEMO-PLAN-{plan.plan_id}-{k}", "account_id": r["account_id"],
             "amount": fen, "in_full": False} for k, (on, fen) in enumerate(pays) if fen > 0]


def _decide_tickets(db: Database, utility: Any, day: date) -> int:
    """The supervisor decides the open tickets whose (simulated) decision day has come."""
    from dianfei.collections.fieldwork_rules import fieldwork_policy
    from dianfei.collections.tickets import decide, list_tickets
    from dianfei.sim.fieldwork import ticket_decisions

    pol = fieldwork_policy()
    clock = FixedClock(datetime.combine(day, time(16), tzinfo=BUSINESS_TZ))
    decided = 0
    with db.session() as s:
        open_ = [t for status in ("open", "escalated")
                 for t in list_tickets(s, status=status, limit=100_000)]
        if not open_:
            return 0
        plan = ticket_decisions(utility, [t.ticket_id for t in open_])
        for t, (after, upheld) in zip(open_, plan, strict=True):
            opened = t.opened_at.astimezone(BUSINESS_TZ).date()
            if pol.add_working_days(opened, after) > day:
                continue
            decide(s, t.ticket_id,
                   decision=("upheld: the bill is corrected" if upheld
                             else "not upheld: the bill stands"),
                   decided_by=SUPERVISOR, clock=clock)
            decided += 1
    return decided


#: the collection events the demo summary counts, in the order it shows them
SUMMARY_EVENTS = ("visit_recorded", "promise_made", "promise_kept", "promise_broken",
                  "plan_agreed", "plan_completed", "plan_broken", "ticket_opened",
                  "ticket_escalated", "ticket_decided", "survey")


def fieldwork_summary(db: Database) -> dict[str, int]:
    """How much field work the collections history holds, by event type (read back from the
    events, so a resumed demo counts what every run did)."""
    from dianfei.collections.repository import events_of_types

    ev = events_of_types(db.engine, SUMMARY_EVENTS)
    counts = dict(zip(*ev["type"].value_counts().to_dict(as_series=False).values(), strict=True)) \
        if ev.height else {}
    return {t: int(counts.get(t, 0)) for t in SUMMARY_EVENTS}
