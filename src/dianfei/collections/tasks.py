"""Work handed between departments (跨部门工单): collections (催费班), marketing (营销部: meters,
billing, prepayment) and customer service (客户服务中心).

Every task is a row of ``collection_tasks`` with a department, an owner, a due time and, once
done, an outcome. Which department owns a kind, how long it has and how it may end is data
(``tasks.toml``). Each step is a ``collection_events`` row on the account (``task_opened``,
``task_assigned``, ``task_done``, ``task_escalated``: the account timeline shows them) and a
record in the audit chain (a staff decision). Tasks other modules raise straight into the table
(dunning visits, field stops, visits' follow-ups, plan approvals) are routed by the daily run
(:func:`route_new_tasks`): department and due time from the table, and their ``task_opened``
event. A task past its due time escalates once to its department's supervisor
(:func:`escalate_overdue`).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dianfei.audit import service as audit
from dianfei.collections.context import event_frame, write_events
from dianfei.collections.models import CollectionTask
from dianfei.core.clock import BUSINESS_TZ, Clock, business_date
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError

if TYPE_CHECKING:
    from sqlalchemy import Engine

RULES_FILE = Path(__file__).with_name("tasks.toml")
STATUSES = ("open", "done", "cancelled")


@dataclass(frozen=True)
class Department:
    department: str
    name: str
    supervisor: str


@dataclass(frozen=True)
class TaskKind:
    kind: str
    department: str
    due_days: int
    outcomes: tuple[str, ...]


@dataclass(frozen=True)
class TaskRules:
    departments: Mapping[str, Department]
    kinds: Mapping[str, TaskKind]

    def kind(self, kind: str) -> TaskKind:
        found = self.kinds.get(kind)
        if found is None:
            raise ValidationError(f"task kind must be one of {', '.join(sorted(self.kinds))}, "
                                  f"got {kind!r}")
        return found

    def department(self, department: str) -> Department:
        found = self.departments.get(department)
        if found is None:
            raise ValidationError(f"department must be one of {', '.join(sorted(self.departments))}"
                                  f", got {department!r}")
        return found


def parse_rules(text: str, file: str) -> TaskRules:
    """The department table; refuses a kind naming an unknown department, a due time that is
    not a positive number of days, or a kind with no outcomes — naming the file and the kind."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"{file}: {exc}") from None
    deps: dict[str, Department] = {}
    for dep, raw in (data.get("departments") or {}).items():
        sup = str(raw.get("supervisor") or "")
        if not sup:
            raise ValidationError(f"{file}: department {dep!r} needs a supervisor (who gets its "
                                  "overdue tasks)")
        deps[dep] = Department(dep, str(raw.get("name", dep)), sup)
    if not deps:
        raise ValidationError(f"{file}: no [departments.*]")
    kinds: dict[str, TaskKind] = {}
    for kind, raw in (data.get("kinds") or {}).items():
        dep = raw.get("department")
        if dep not in deps:
            raise ValidationError(f"{file}: kind {kind!r} names department {dep!r}; known: "
                                  f"{', '.join(sorted(deps))}")
        days = raw.get("due_days")
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise ValidationError(f"{file}: kind {kind!r} due_days must be a whole number ≥ 1, "
                                  f"got {days!r}")
        outcomes = tuple(str(o) for o in raw.get("outcomes") or ())
        if not outcomes:
            raise ValidationError(f"{file}: kind {kind!r} lists no outcomes")
        if len(kind) > 24:
            raise ValidationError(f"{file}: kind {kind!r} is longer than 24 characters")
        kinds[kind] = TaskKind(kind, dep, days, outcomes)
    return TaskRules(deps, kinds)


_CACHE: dict[Path, TaskRules] = {}


def rules(path: Path | None = None) -> TaskRules:
    key = (path or RULES_FILE).resolve()
    if key not in _CACHE:
        _CACHE[key] = parse_rules(key.read_text(encoding="utf-8"), key.name)
    return _CACHE[key]


# -- events and audit ------------------------------------------------------------------------------


def _event(session: Session, task: CollectionTask, type_: str, key: str, at: datetime,
           detail: dict[str, Any]) -> None:
    from dianfei.collections import repository

    conn = session.connection()
    if repository.existing_keys(conn, "collection_events", [key]):
        return
    write_events(conn, event_frame([{
        "key": key, "account_id": task.account_id, "customer_id": task.customer_id,
        "type": type_, "at": at, "business_date": business_date(at),
        "detail": json.dumps({"task_id": task.task_id, "kind": task.kind, **detail},
                             ensure_ascii=False)}]))


def _instant(value: datetime | None) -> str | None:
    return value.astimezone(BUSINESS_TZ).isoformat(timespec="seconds") if value else None


def task_json(task: CollectionTask, now: datetime | None = None) -> dict[str, Any]:
    """A task as the CLI and the REST API show it (``account`` is the customer id, as
    ``collect events`` has it; ``account_id`` the billing account)."""
    overdue = (now is not None and task.status == "open" and task.due_at is not None
               and task.due_at < now)
    return {"task_id": task.task_id, "account": task.customer_id, "account_id": task.account_id,
            "kind": task.kind, "department": task.department, "status": task.status,
            "owner": task.owner, "created_at": _instant(task.created_at),
            "due_at": _instant(task.due_at), "overdue": overdue,
            "done_at": _instant(task.done_at), "done_by": task.done_by, "outcome": task.outcome,
            "escalated_at": _instant(task.escalated_at), "escalated_to": task.escalated_to,
            "detail": json.loads(task.detail) if task.detail else None}


# -- the actions -----------------------------------------------------------------------------------


def open_task(session: Session, *, account_id: str, kind: str, opened_by: str, clock: Clock,
              key: str | None = None, due_at: datetime | None = None, owner: str | None = None,
              detail: Mapping[str, Any] | None = None,
              task_rules: TaskRules | None = None) -> CollectionTask:
    """Open a task for ``kind``'s department (due in the kind's ``due_days`` unless ``due_at``).
    ``key`` is the idempotency key: the same key returns the task it opened before (a retried
    request), and is refused when it names a different account or kind."""
    from dianfei.customers.service import customer_of_account

    tr = task_rules or rules()
    spec = tr.kind(kind)
    if not opened_by.strip():
        raise ValidationError("a task needs who opens it (opened_by)")
    now = clock.now()
    if due_at is not None:
        if due_at.tzinfo is None:
            raise ValidationError(f"due_at needs a time zone, got {due_at.isoformat()}")
        if due_at <= now:
            raise ValidationError(f"due_at {_instant(due_at)} is not after now ({_instant(now)})")
    key = key or f"task:{kind}:{account_id}:{now.isoformat()}"
    if len(key) > 120:
        raise ValidationError(f"the task key is longer than 120 characters: {key[:40]}…")
    have = session.execute(select(CollectionTask).where(CollectionTask.key == key)).scalar_one_or_none()
    if have is not None:
        if have.account_id != account_id or have.kind != kind:
            raise ConflictError(f"key {key!r} already opened task {have.task_id} ({have.kind} for "
                                f"{have.account_id}), not {kind} for {account_id}")
        return have
    customer = customer_of_account(session.connection(), account_id)
    task = CollectionTask(key=key, account_id=account_id, customer_id=customer, kind=kind,
                          status="open", created_at=now,
                          due_at=due_at or now + timedelta(days=spec.due_days),
                          department=spec.department, owner=owner or None,
                          detail=json.dumps(dict(detail), ensure_ascii=False) if detail else None)
    session.add(task)
    session.flush()
    _event(session, task, "task_opened", f"task:{task.task_id}:opened", now,
           {"department": task.department, "owner": task.owner, "due_at": _instant(task.due_at),
            "by": opened_by})
    audit.record(session.connection(), "task.opened", f"task:{task.task_id}",
                 {"account_id": account_id, "kind": kind, "department": task.department,
                  "owner": task.owner, "by": opened_by})
    return task


def _locked(session: Session, task_id: int) -> CollectionTask:
    task = session.execute(select(CollectionTask).where(CollectionTask.task_id == task_id)
                           .with_for_update()).scalar_one_or_none()
    if task is None:
        raise NotFoundError(f"task {task_id} does not exist")
    return task


def assign_task(session: Session, task_id: int, *, owner: str, by: str, clock: Clock,
                department: str | None = None, task_rules: TaskRules | None = None) -> CollectionTask:
    """Give an open task to ``owner`` — and, with ``department``, hand it to another department
    (a meter check from collections to marketing …). Assigning it to whom it already belongs
    changes nothing (a retried request)."""
    tr = task_rules or rules()
    owner = owner.strip()
    if not owner:
        raise ValidationError("assigning a task needs an owner")
    if department is not None:
        tr.department(department)
    task = _locked(session, task_id)
    if task.status != "open":
        raise ConflictError(f"task {task_id} is {task.status}; only open tasks are assigned")
    if task.owner == owner and (department is None or task.department == department):
        return task
    now = clock.now()
    before = {"owner": task.owner, "department": task.department}
    task.owner = owner
    if department is not None:
        task.department = department
    session.flush()
    _event(session, task, "task_assigned",
           f"task:{task.task_id}:assigned:{now.isoformat()}"[:120], now,
           {"owner": owner, "department": task.department, "was": before, "by": by})
    audit.record(session.connection(), "task.assigned", f"task:{task.task_id}",
                 {"owner": owner, "department": task.department, "was": before, "by": by})
    return task


def complete_task(session: Session, task_id: int, *, outcome: str, by: str, clock: Clock,
                  note: str | None = None, task_rules: TaskRules | None = None) -> CollectionTask:
    """Report a task done with its outcome (one of the kind's outcomes in tasks.toml). A field
    stop or reconnection goes through the stop cases first (re-checked against the balance: a
    customer who paid meanwhile gets no stop, and the task ends ``cancelled``). A
    ``contact_update`` done ``contact_verified`` closes its contact flags."""
    from dianfei.collections import stops
    from dianfei.collections.rules import policy

    tr = task_rules or rules()
    task = _locked(session, task_id)
    if task.status != "open":
        raise ConflictError(f"task {task_id} is already {task.status}")
    allowed = tr.kinds[task.kind].outcomes if task.kind in tr.kinds else ()
    if outcome not in allowed:
        raise ValidationError(f"outcome of a {task.kind} task must be one of "
                              f"{', '.join(allowed) or '(none configured in tasks.toml)'}, "
                              f"got {outcome!r}")
    if not by.strip():
        raise ValidationError("completing a task needs who did it")
    now = clock.now()
    if task.kind in ("field_stop", "field_reconnect") and task.case_id is not None:
        stops.complete_task(session, task_id, done_by=by, clock=clock, policy_=policy())
        session.refresh(task)
        if task.status == "cancelled":
            outcome = "cancelled"
    else:
        task.status, task.done_at, task.done_by = "done", now, by
    task.outcome = outcome
    session.flush()
    _event(session, task, "task_done", f"task:{task.task_id}:done", now,
           {"outcome": outcome, "by": by, **({"note": note} if note else {})})
    audit.record(session.connection(), "task.done", f"task:{task.task_id}",
                 {"account_id": task.account_id, "kind": task.kind, "outcome": outcome, "by": by})
    if task.kind == "inspection":
        _record_inspection(session, task, outcome, by=by, note=note, clock=clock)
    if task.kind == "contact_update" and outcome == "contact_verified":
        from dianfei.collections.contacts import close_flags_of_task

        close_flags_of_task(session, task, by=by, clock=clock)
    return task


def _record_inspection(session: Session, task: CollectionTask, outcome: str, *, by: str,
                       note: str | None, clock: Clock) -> None:
    """An inspection task's outcome is the inspection's (risk's register, which teaches the
    supervised theft model). One already recorded for the account that day (``dianfei theft
    record`` by the inspector) stands: the task only closes."""
    from dianfei.core.clock import business_date
    from dianfei.core.errors import ConflictError
    from dianfei.risk.service import record_inspection

    try:
        record_inspection(session, account_id=task.account_id, inspected_on=business_date(clock.now()),
                          outcome=outcome, clock=clock, inspector=by, note=note)
    except ConflictError:
        audit.record(session.connection(), "task.inspection_already_recorded",
                     f"task:{task.task_id}", {"account_id": task.account_id, "outcome": outcome})


def list_tasks(session: Session, *, clock: Clock, status: str | None = "open",
               department: str | None = None, owner: str | None = None,
               account_id: str | None = None, overdue: bool = False,
               kind: str | None = None) -> list[dict[str, Any]]:
    """Tasks, oldest first, filtered; ``overdue``: open ones past their due time."""
    if status is not None and status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)} (or all), got {status!r}")
    if department is not None:
        rules().department(department)
    now = clock.now()
    q = select(CollectionTask).order_by(CollectionTask.task_id)
    if status:
        q = q.where(CollectionTask.status == status)
    if department:
        q = q.where(CollectionTask.department == department)
    if owner:
        q = q.where(CollectionTask.owner == owner)
    if account_id:
        q = q.where(CollectionTask.account_id == account_id)
    if kind:
        q = q.where(CollectionTask.kind == kind)
    if overdue:
        q = q.where(CollectionTask.status == "open", CollectionTask.due_at < now)
    return [task_json(t, now) for t in session.scalars(q)]


def get_task(session: Session, task_id: int) -> CollectionTask:
    task = session.get(CollectionTask, task_id)
    if task is None:
        raise NotFoundError(f"task {task_id} does not exist")
    return task


# -- the daily run ---------------------------------------------------------------------------------


def route_new_tasks(session: Session, *, clock: Clock, task_rules: TaskRules | None = None) -> int:
    """Tasks other modules raised straight into the table (no department yet): give each its
    kind's department (and due time when it has none) and its ``task_opened`` event — set-based
    (one UPDATE per kind, one insert of events), since a day can raise thousands of visits. A
    kind the table does not know goes to collections, whose supervisor sees it."""
    from sqlalchemy import update

    from dianfei.collections import ops_repository

    tr = task_rules or rules()
    conn = session.connection()
    fresh = ops_repository.unrouted_tasks(conn)
    if fresh.height == 0:
        return 0
    for kind in sorted(set(fresh["kind"].to_list())):
        spec = tr.kinds.get(kind)
        session.execute(update(CollectionTask).where(CollectionTask.department.is_(None),
                                                     CollectionTask.kind == kind)
                        .values(department=spec.department if spec else "collections"))
        if spec is not None:
            ops_repository.fill_due(conn, kind, spec.due_days)
    rows = ops_repository.tasks_by_id(conn, fresh["task_id"].to_list())
    write_task_events(conn, rows, "task_opened", "opened", by="daily run")
    return fresh.height


def write_task_events(conn: Any, rows: Any, type_: str, suffix: str, *, by: str) -> int:
    """One ``type_`` event per task of ``rows`` (task_id, account_id, customer_id, kind,
    department, owner, due_at, created_at), key ``task:{id}:{suffix}``, those not yet recorded.
    Built as columns: the first day of a million accounts opens a hundred thousand tasks."""
    import polars as pl

    from dianfei.collections import repository
    from dianfei.collections.context import event_schema

    if rows.height == 0:
        return 0
    tz = str(BUSINESS_TZ)
    keyed = rows.with_columns(pl.format(f"task:{{}}:{suffix}", "task_id").alias("key"))
    have = repository.existing_keys(conn, "collection_events", keyed["key"].to_list())
    # a task's event is dated by its opening; other types carry no date here and are not written
    at = (pl.col("created_at") if type_ == "task_opened"
          else pl.lit(None, pl.Datetime("us", "UTC"))).cast(pl.Datetime("us", "UTC"))
    local_due = pl.col("due_at").cast(pl.Datetime("us", "UTC")).dt.convert_time_zone(tz)
    frame = (keyed.filter(~pl.col("key").is_in(list(have)))
             .with_columns(at.alias("at")).filter(pl.col("at").is_not_null())
             .select("key", pl.col("account_id").cast(pl.String),
                     pl.col("customer_id").cast(pl.String), pl.lit(type_).alias("type"), "at",
                     pl.col("at").dt.convert_time_zone(tz).dt.date().alias("business_date"),
                     pl.struct(pl.col("task_id").cast(pl.Int64), pl.col("kind").cast(pl.String),
                               pl.col("department").cast(pl.String),
                               pl.col("owner").cast(pl.String),
                               local_due.dt.strftime("%Y-%m-%dT%H:%M:%S%:z").alias("due_at"),
                               pl.lit(by).alias("by")).struct.json_encode().alias("detail")))
    schema = event_schema()
    return write_events(conn, frame.select(
        [pl.col(c) if c in frame.columns else pl.lit(None).cast(t).alias(c)
         for c, t in schema.items()]).cast(schema))


def escalate_overdue(session: Session, *, clock: Clock, task_rules: TaskRules | None = None) -> int:
    """Open tasks past their due time go, once, to their department's supervisor
    (``task_escalated`` each; one audit record naming them per department). Set-based: one
    UPDATE per department. Returns how many escalated."""
    from sqlalchemy import update

    from dianfei.collections import ops_repository

    tr = task_rules or rules()
    route_new_tasks(session, clock=clock, task_rules=tr)
    now = clock.now()
    conn = session.connection()
    late = ops_repository.overdue_unescalated(conn, now)
    if late.height == 0:
        return 0
    rows = []
    for dep_id in sorted(set(late["department"].to_list())):
        dep = tr.departments.get(dep_id) or tr.departments["collections"]
        ids = late.filter(late["department"] == dep_id)["task_id"].to_list()
        # compare-and-set: a task done or escalated meanwhile is left as it is
        session.execute(update(CollectionTask).where(
            CollectionTask.task_id.in_(ids), CollectionTask.status == "open",
            CollectionTask.escalated_at.is_(None)).values(escalated_at=now, escalated_to=dep.supervisor)
            .execution_options(synchronize_session=False))
        audit.record(conn, "task.escalated", dep_id, {"to": dep.supervisor, "tasks": ids})
        for r in late.filter(late["department"] == dep_id).iter_rows(named=True):
            rows.append({"key": f"task:{r['task_id']}:escalated", "account_id": r["account_id"],
                         "customer_id": r["customer_id"], "type": "task_escalated", "at": now,
                         "business_date": business_date(now),
                         "detail": json.dumps({"task_id": r["task_id"], "kind": r["kind"],
                                               "department": dep.department,
                                               "escalated_to": dep.supervisor,
                                               "owner": r["owner"], "due_at": _instant(r["due_at"])},
                                              ensure_ascii=False)})
    from dianfei.collections import repository

    have = repository.existing_keys(conn, "collection_events", [r["key"] for r in rows])
    write_events(conn, event_frame([r for r in rows if r["key"] not in have]))
    session.expire_all()
    return late.height


#: the ladder's tasks about arrears (key ``dun:…``) and the outcome they end with once nothing
#: is overdue any more
SETTLED_OUTCOME = {"collector_visit": "paid", "referral": "recovered"}


def close_settled(session: Session, overdue_accounts: Sequence[str], *, clock: Clock) -> int:
    """The daily step after the snapshot: the ladder's arrears tasks (``collector_visit``,
    ``referral``, key ``dun:…``) still open for an account with nothing overdue any more are
    done — ``paid`` / ``recovered``, by ``daily run`` — with a ``task_done`` event each and one
    audit record per kind. Without it a visit task stayed open (and on a collector's worklist)
    for ever after the customer paid, and the open tasks grew with the history. Tasks raised for
    other reasons (a protected prepaid customer at cut-off, a visit's follow-ups) are not
    touched. Compare-and-set: a task done meanwhile is left as it is. Returns how many closed."""
    import polars as pl
    from sqlalchemy import update

    from dianfei.collections import ops_repository, repository

    conn = session.connection()
    open_ = ops_repository.open_ladder_tasks(conn, tuple(SETTLED_OUTCOME))
    settled = open_.filter(~pl.col("account_id").is_in(sorted(set(overdue_accounts))))
    if settled.height == 0:
        return 0
    now = clock.now()
    rows = []
    for kind, outcome in SETTLED_OUTCOME.items():
        mine = settled.filter(pl.col("kind") == kind)
        if mine.height == 0:
            continue
        ids = mine["task_id"].to_list()
        for i in range(0, len(ids), 10_000):  # the first run after an upgrade may close many
            session.execute(update(CollectionTask).where(
                CollectionTask.task_id.in_(ids[i:i + 10_000]), CollectionTask.status == "open")
                .values(status="done", done_at=now, done_by="daily run", outcome=outcome)
                .execution_options(synchronize_session=False))
        audit.record(conn, "task.done", kind, {"outcome": outcome, "by": "daily run",
                                               "reason": "nothing overdue", "tasks": ids})
        for r in mine.iter_rows(named=True):
            rows.append({"key": f"task:{r['task_id']}:done", "account_id": r["account_id"],
                         "customer_id": r["customer_id"], "type": "task_done", "at": now,
                         "business_date": business_date(now),
                         "detail": json.dumps({"task_id": r["task_id"], "kind": kind,
                                               "outcome": outcome, "by": "daily run"},
                                              ensure_ascii=False)})
    have = repository.existing_keys(conn, "collection_events", [r["key"] for r in rows])
    write_events(conn, event_frame([r for r in rows if r["key"] not in have]))
    session.expire_all()
    return settled.height


def open_counts(engine: Engine) -> dict[str, int]:
    """Open tasks per department (for reports)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        return {str(d or "unrouted"): int(n) for d, n in conn.execute(text(
            "SELECT department, COUNT(*) FROM collection_tasks WHERE status = 'open' "
            "GROUP BY department"))}
