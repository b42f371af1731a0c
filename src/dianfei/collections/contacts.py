"""Contact data quality (联系方式核实): which accounts cannot be reached, and getting them fixed.

Three causes flag an account (``contact_flags``, one open flag per account and field):

- **bounced** — a notice notify gave up on because the contact itself is wrong or missing
  (``notify.service.undeliverable_since``: the provider refused the number or mailbox, or
  nothing on file), not a gateway outage;
- **wrong_contact** — a visit or call recorded with outcome ``wrong_contact`` (a
  ``visit_recorded`` collection event);
- **missing_phone / missing_email** — no phone on file (customers service), or no e-mail for a
  business customer, who gets e-bills (:data:`EMAIL_REQUIRED_CLASSES`).

Each flag hands one ``contact_update`` task to customer service (or joins the account's open one,
e.g. the task a wrong-contact visit already raised). A verified update — ``dianfei contact
verify`` or the task completed ``contact_verified`` — closes the account's flags for that field
(``contact_verified``) and records when the phone / e-mail was verified (``contact_checks``): the
coverage report counts verified phones by supply station.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dianfei.audit import service as audit
from dianfei.collections import ops_repository as repo
from dianfei.collections.context import event_frame, write_events
from dianfei.collections.ops_models import ContactCheck, ContactFlag
from dianfei.core.clock import BUSINESS_TZ, Clock, business_date, start_of_day
from dianfei.core.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    import polars as pl

    from dianfei.collections.models import CollectionTask
    from dianfei.db.engine import Database

FIELDS = ("phone", "email")
#: classes whose bills go out by e-mail, so a missing address is worth a call
EMAIL_REQUIRED_CLASSES = ("commercial", "industrial", "large_industry")
#: the channel whose failure puts a field in doubt
CHANNEL_FIELD = {"sms": "phone", "email": "email"}
#: how far back each day looks for bounces and wrong-contact visits (a skipped day is caught up;
#: keys make a second look record nothing twice)
LOOKBACK_DAYS = 7


def _instant(value: datetime | None) -> str | None:
    return value.astimezone(BUSINESS_TZ).isoformat(timespec="seconds") if value else None


def _causes(db: Database, day: date, now: datetime,
            flagged: pl.DataFrame | None = None) -> list[dict[str, Any]]:
    """Every cause seen from ``day - LOOKBACK_DAYS`` to now: key, account_id, customer_id,
    reason, field, at, detail. ``flagged`` (account_id, field of the open flags): a missing
    phone or e-mail already flagged is left out here, as columns — tens of thousands of
    accounts without a phone at a million, flagged once and then waiting for a clerk."""
    import polars as pl

    from dianfei.customers.service import contact_facts
    from dianfei.notify.service import customers_with_email, undeliverable_since

    since = day - timedelta(days=LOOKBACK_DAYS)
    out: list[dict[str, Any]] = []
    bounced = undeliverable_since(db.engine, start_of_day(since), now)
    for r in bounced.iter_rows(named=True):
        field = CHANNEL_FIELD.get(r["channel"])
        if field is None:
            continue
        out.append({"key": f"bounce:{r['key']}", "account_id": r["account_id"],
                    "customer_id": r["customer_id"], "reason": "bounced", "field": field,
                    "at": r["at"], "detail": {"notice": r["notice"], "channel": r["channel"],
                                               "status": r["status"], "error": r["reason"]}})
    visits = repo.events_mentioning(db.engine, "visit_recorded", since, "wrong_contact")
    for r in visits.iter_rows(named=True):
        try:
            detail = json.loads(r["detail"] or "{}")
        except ValueError:
            continue
        if detail.get("outcome") != "wrong_contact":
            continue
        out.append({"key": f"visit:{r['key']}", "account_id": r["account_id"],
                    "customer_id": r["customer_id"], "reason": "wrong_contact", "field": "phone",
                    "at": r["at"], "detail": {"visit_id": detail.get("visit_id"),
                                              "collector": detail.get("collector")}})
    # only the accounts that can raise a cause: no phone on file, or a class that needs an e-mail
    facts = contact_facts(db.engine, gaps_or_classes=sorted(EMAIL_REQUIRED_CLASSES))
    flagged = flagged if flagged is not None else pl.DataFrame(
        schema={"account_id": pl.String, "field": pl.String})

    def unflagged(frame: pl.DataFrame, field: str) -> pl.DataFrame:
        return frame.join(flagged.filter(pl.col("field") == field).select("account_id"),
                          on="account_id", how="anti")

    for r in unflagged(facts.filter(~pl.col("has_phone")), "phone").iter_rows(named=True):
        out.append({"key": f"missing_phone:{r['account_id']}:{day.isoformat()}",
                    "account_id": r["account_id"], "customer_id": r["customer_id"],
                    "reason": "missing_phone", "field": "phone", "at": now, "detail": {}})
    business = facts.filter(pl.col("customer_class").is_in(EMAIL_REQUIRED_CLASSES))
    with_email = customers_with_email(db.engine, business["customer_id"].to_list())
    for r in unflagged(business.filter(~pl.col("customer_id").is_in(sorted(with_email))),
                       "email").iter_rows(named=True):
        out.append({"key": f"missing_email:{r['account_id']}:{day.isoformat()}",
                    "account_id": r["account_id"], "customer_id": r["customer_id"],
                    "reason": "missing_email", "field": "email", "at": now, "detail": {}})
    return out


def check_contacts(db: Database, day: date, *, clock: Clock) -> dict[str, int]:
    """The daily step: flag accounts whose contact data is in doubt, one ``contact_update`` task
    per flag (or the account's open one). Idempotent: a cause already flagged, a field already
    flagged open, and a bounce from before the field's last verification add nothing. Set-based:
    the first day can flag every account without a phone."""
    import polars as pl

    from dianfei.audit import service as audit_service
    from dianfei.collections.tasks import rules, write_task_events
    from dianfei.db.bulk import write_frame

    now = clock.now()
    # the open flags are read again in the transaction below, which decides
    causes = _causes(db, day, now, repo.open_flag_fields(db.engine))
    counts = {"flagged": 0, "tasks": 0}
    if not causes:
        return counts
    with db.engine.begin() as conn:
        have = repo.existing_flag_keys(conn, [c["key"] for c in causes])
        got = repo.open_flag_fields(conn)
        open_now = set(zip(got["account_id"].to_list(), got["field"].to_list(), strict=True))
        verified = {r["account_id"]: r for r in repo.checks(
            conn, [c["account_id"] for c in causes]).iter_rows(named=True)}
        fresh = []
        for c in causes:
            where = (c["account_id"], c["field"])
            if c["key"] in have or where in open_now:
                continue
            last = verified.get(c["account_id"], {}).get(f"{c['field']}_verified_at")
            if last is not None and c["at"] <= last and c["reason"] in ("bounced", "wrong_contact"):
                continue  # it failed on the contact that has since been corrected
            open_now.add(where)
            fresh.append(c)
        if not fresh:
            return counts
        write_frame(conn, "contact_flags", pl.DataFrame([{
            "key": c["key"], "account_id": c["account_id"], "customer_id": c["customer_id"],
            "reason": c["reason"], "field": c["field"], "status": "open", "opened_at": now,
            "detail": json.dumps(c["detail"], ensure_ascii=False) if c["detail"] else None}
            for c in fresh], schema={"key": pl.String, "account_id": pl.String,
                                     "customer_id": pl.String, "reason": pl.String,
                                     "field": pl.String, "status": pl.String,
                                     "opened_at": pl.Datetime("us", "UTC"), "detail": pl.String}))
        ids = repo.flags_by_key(conn, [c["key"] for c in fresh])
        task_of = repo.open_contact_tasks(conn, sorted({c["account_id"] for c in fresh}))
        # one new task per account that has none open: its first new flag opens it
        spec = rules().kind("contact_update")
        new_tasks = {}
        for c in fresh:
            if c["account_id"] not in task_of and c["account_id"] not in new_tasks:
                fid = ids[c["key"]]
                new_tasks[c["account_id"]] = {
                    "key": f"contact:{fid}", "account_id": c["account_id"],
                    "customer_id": c["customer_id"], "kind": "contact_update", "status": "open",
                    "created_at": now, "due_at": now + timedelta(days=spec.due_days),
                    "department": spec.department,
                    "detail": json.dumps({"flag_id": fid, "reason": c["reason"],
                                          "field": c["field"]})}
        if new_tasks:
            write_frame(conn, "collection_tasks", pl.DataFrame(list(new_tasks.values()), schema={
                "key": pl.String, "account_id": pl.String, "customer_id": pl.String,
                "kind": pl.String, "status": pl.String, "created_at": pl.Datetime("us", "UTC"),
                "due_at": pl.Datetime("us", "UTC"), "department": pl.String,
                "detail": pl.String}))
            opened = repo.tasks_by_key(conn, [t["key"] for t in new_tasks.values()])
            write_task_events(conn, opened, "task_opened", "opened", by="daily run")
            task_of.update(zip(opened["account_id"].to_list(), opened["task_id"].to_list(),
                               strict=True))
            audit_service.record(conn, "task.opened", "contact_update",
                                 {"tasks": opened.height, "by": "daily run",
                                  "department": spec.department})
        links = pl.DataFrame({"flag_id": [ids[c["key"]] for c in fresh],
                              "task_id": [task_of[c["account_id"]] for c in fresh]},
                             schema={"flag_id": pl.Int64, "task_id": pl.Int64})
        from dianfei.collections import repository

        repository.update_rows(conn, "contact_flags", "flag_id", links)
        write_events(conn, event_frame([{
            "key": f"cflag:{ids[c['key']]}", "account_id": c["account_id"],
            "customer_id": c["customer_id"], "type": "contact_flagged", "at": now,
            "business_date": business_date(now),
            "detail": json.dumps({"flag_id": ids[c["key"]], "reason": c["reason"],
                                  "field": c["field"], "task_id": task_of[c["account_id"]],
                                  **c["detail"]}, ensure_ascii=False)} for c in fresh]))
        counts["flagged"], counts["tasks"] = len(fresh), len(new_tasks)
    return counts


def _close(session: Session, flags: list[ContactFlag], *, account_id: str, customer_id: str,
           fields: set[str], by: str, now: datetime, how: str) -> None:
    for f in flags:
        f.status, f.closed_at, f.closed_by = "verified", now, by
    check = session.get(ContactCheck, account_id)
    if check is None:
        check = ContactCheck(account_id=account_id, customer_id=customer_id)
        session.add(check)
    for field in fields:
        setattr(check, f"{field}_verified_at", now)
        setattr(check, f"{field}_verified_by", by)
    session.flush()
    conn = session.connection()
    for field in sorted(fields):
        write_events(conn, event_frame([{
            "key": f"cverify:{account_id}:{field}:{now.isoformat()}"[:120],
            "account_id": account_id, "customer_id": customer_id, "type": "contact_verified",
            "at": now, "business_date": business_date(now),
            "detail": json.dumps({"field": field, "by": by, "how": how,
                                  "flags": [f.flag_id for f in flags if f.field == field]})}]))
    audit.record(conn, "contact.verified", account_id,
                 {"fields": sorted(fields), "by": by, "how": how,
                  "flags": [f.flag_id for f in flags]})


def verify_contact(session: Session, *, account_id: str, field: str, verified_by: str,
                   clock: Clock, value: str | None = None) -> dict[str, Any]:
    """Customer service confirmed the account's phone or e-mail with the customer (recording
    ``value`` when it changed): the open flags of that field close, the linked ``contact_update``
    tasks with no other open flag are done (outcome ``contact_verified``)."""
    from dianfei.customers.service import contact_facts, customer_of_account, set_phone
    from dianfei.notify.service import customers_with_email, set_contact

    if field not in FIELDS:
        raise ValidationError(f"field must be one of {', '.join(FIELDS)}, got {field!r}")
    if not verified_by.strip():
        raise ValidationError("a verification needs who verified it")
    conn = session.connection()
    customer = customer_of_account(conn, account_id)
    if value is not None:
        if field == "phone":
            set_phone(session, customer_id=customer, phone=value)
        else:
            if not value.strip():
                raise ValidationError("an e-mail address to verify cannot be empty")
            set_contact(session, customer_id=customer, email=value, clock=clock)
    else:
        session.flush()
        on_file = (bool(contact_facts(session.get_bind(), [account_id])["has_phone"].any())  # type: ignore[arg-type]
                   if field == "phone" else customer in customers_with_email(conn, [customer]))
        if not on_file:
            raise ValidationError(f"account {account_id} has no {field} on file to verify: give "
                                  f"the {field} the customer confirmed")
    now = clock.now()
    flags = list(session.scalars(select(ContactFlag).where(
        ContactFlag.account_id == account_id, ContactFlag.field == field,
        ContactFlag.status == "open").with_for_update()))
    _close(session, flags, account_id=account_id, customer_id=customer, fields={field},
           by=verified_by, now=now, how="verified" if value is None else "updated")
    done = _finish_tasks(session, {f.task_id for f in flags if f.task_id}, by=verified_by,
                         clock=clock)
    return {"account": customer, "account_id": account_id, "field": field,
            "flags_closed": [f.flag_id for f in flags], "tasks_done": done,
            "verified_at": _instant(now), "verified_by": verified_by}


def _finish_tasks(session: Session, task_ids: set[int], *, by: str, clock: Clock) -> list[int]:
    from dianfei.collections.models import CollectionTask
    from dianfei.collections.tasks import complete_task

    done = []
    for tid in sorted(task_ids):
        task = session.get(CollectionTask, tid)
        still = session.scalars(select(ContactFlag.flag_id).where(
            ContactFlag.task_id == tid, ContactFlag.status == "open")).first()
        if task is not None and task.status == "open" and still is None:
            complete_task(session, tid, outcome="contact_verified", by=by, clock=clock)
            done.append(tid)
    return done


def close_flags_of_task(session: Session, task: CollectionTask, *, by: str, clock: Clock) -> int:
    """A ``contact_update`` task done ``contact_verified``: its open flags close (their fields
    verified now). Returns how many closed."""
    flags = list(session.scalars(select(ContactFlag).where(
        ContactFlag.task_id == task.task_id, ContactFlag.status == "open").with_for_update()))
    if not flags:
        return 0
    _close(session, flags, account_id=task.account_id, customer_id=task.customer_id,
           fields={f.field for f in flags}, by=by, now=clock.now(), how="task")
    return len(flags)


# -- reading ---------------------------------------------------------------------------------------


def contact_status(engine: Any, account_ids: list[str]) -> pl.DataFrame:
    """account_id, contact_flag (the open flags' reasons, comma-separated; null when none),
    phone_verified (a phone on file, verified, and not in doubt) of ``account_ids`` — what the
    worklist shows beside each account."""
    import polars as pl

    from dianfei.customers.service import contact_facts

    base = pl.DataFrame({"account_id": list(dict.fromkeys(account_ids))},
                        schema={"account_id": pl.String})
    flags = (repo.open_flags(engine).filter(pl.col("account_id").is_in(base["account_id"].to_list()))
             .group_by("account_id").agg(pl.col("reason").unique().sort().str.join(",")
                                         .alias("contact_flag"),
                                         (pl.col("field") == "phone").any().alias("_phone_doubt")))
    checks = repo.checks(engine, base["account_id"].to_list()).select("account_id",
                                                                      "phone_verified_at")
    phones = contact_facts(engine, base["account_id"].to_list()).select("account_id", "has_phone")
    return (base.join(flags, on="account_id", how="left")
            .join(checks, on="account_id", how="left")
            .join(phones, on="account_id", how="left")
            .with_columns((pl.col("phone_verified_at").is_not_null()
                           & pl.col("has_phone").fill_null(False)
                           & ~pl.col("_phone_doubt").fill_null(False)).alias("phone_verified"))
            .select("account_id", "contact_flag", "phone_verified"))


def coverage(engine: Any) -> list[dict[str, Any]]:
    """Per supply station (供电所): open accounts, phones on file, verified phones and their share
    (verified / accounts, 4 decimals as a string), open contact flags; then a total row."""
    import polars as pl

    from dianfei.customers.service import contact_facts

    facts = contact_facts(engine)
    status = contact_status(engine, facts["account_id"].to_list())
    per = (facts.join(status, on="account_id", how="left")
           .with_columns(pl.col("station_id").fill_null("(none)"))
           .group_by("station_id").agg(
               pl.len().alias("accounts"), pl.col("has_phone").sum().alias("phone_on_file"),
               pl.col("phone_verified").sum().alias("phone_verified"),
               pl.col("contact_flag").is_not_null().sum().alias("flagged"))
           .sort("station_id"))
    rows = per.to_dicts()
    if rows:
        rows.append({"station_id": "(total)", **{k: sum(int(r[k]) for r in rows) for k in
                                                 ("accounts", "phone_on_file", "phone_verified",
                                                  "flagged")}})
    for r in rows:
        n = int(r["accounts"])
        r["verified_share"] = f"{int(r['phone_verified']) / n:.4f}" if n else "0.0000"
    return rows


def flags_json(engine: Any, status: str | None = "open") -> list[dict[str, Any]]:
    """Contact flags as ``dianfei contact flags --json`` prints them."""
    if status is not None and status not in ("open", "verified"):
        raise ValidationError(f"status must be open, verified or all, got {status!r}")
    out = []
    for r in repo.flags(engine, status).iter_rows(named=True):
        out.append({"flag_id": r["flag_id"], "account": r["customer_id"],
                    "account_id": r["account_id"], "reason": r["reason"], "field": r["field"],
                    "status": r["status"], "opened_at": _instant(r["opened_at"]),
                    "task_id": r["task_id"], "closed_at": _instant(r["closed_at"]),
                    "closed_by": r["closed_by"],
                    "detail": json.loads(r["detail"]) if r["detail"] else None})
    return out


def flag_of(session: Session, flag_id: int) -> ContactFlag:
    flag = session.get(ContactFlag, flag_id)
    if flag is None:
        raise NotFoundError(f"contact flag {flag_id} does not exist")
    return flag
