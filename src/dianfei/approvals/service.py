"""Maker-checker (四眼原则): ask for a change, let a second person with the right role approve
or refuse it. The one door in front of waivers, write-offs, bill corrections, suspension orders
and tariff changes (docs/approvals.md).

- :func:`request` stores a ``pending`` request (the maker's permission
  ``approvals:request:<kind>`` checked, the payload checked by its kind) and its audit record.
- :func:`approve` executes the change through the owning package's service **in the approval's
  transaction**, then marks the request ``executed``: if the change fails, its typed error
  propagates and nothing of the change or the approval is kept (the request stays pending).
- :func:`reject` refuses with the checker's reason; :func:`expire_due` closes requests nobody
  decided in time; :func:`raise_rule_requests` turns suspension orders the dunning ladder raised
  (where the policy wants approval) into requests with the maker ``system:collections``.

The checker needs ``approvals:decide:<kind>`` and is never the maker; a request is decided once.
Every request, approval, refusal and expiry is a record in the audit chain.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dianfei.approvals.kinds import Execution, kind, kinds
from dianfei.approvals.models import ApprovalRequest
from dianfei.audit import service as audit
from dianfei.core.clock import Clock
from dianfei.core.errors import ConflictError, DianfeiError, NotFoundError, ValidationError
from dianfei.core.money import fmt_yuan
from dianfei.security.service import APPROVAL_KINDS, Principal, allows

if TYPE_CHECKING:
    from dianfei.db.engine import Database

STATES = ("pending", "executed", "rejected", "expired", "withdrawn")
#: the maker of the requests the collections rules raise (suspension orders needing approval)
RULE_MAKER = "system:collections"


class ApprovalForbidden(DianfeiError):
    """The caller's role may not ask for or decide this kind of change."""

    code = "approval_forbidden"
    http_status = 403


class MakerIsChecker(DianfeiError):
    """Four eyes: whoever asked for a change cannot approve (or refuse) it."""

    code = "maker_is_checker"
    http_status = 403


class AlreadyDecided(ConflictError):
    code = "already_decided"


class RequestExpired(ConflictError):
    code = "request_expired"


class AlreadyRequested(ConflictError):
    code = "already_requested"


def _may(who: Principal, permission: str, what: str) -> None:
    if not allows(who.role, permission):
        raise ApprovalForbidden(f"{who.username} ({who.role}) may not {what} "
                                f"(needs {permission})")


def _clean_reason(reason: str, what: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError(f"{what} needs a reason")
    if len(reason) > 2000:
        raise ValidationError(f"{what}: the reason is at most 2000 characters")
    return reason.strip()


def _record(session: Session, action: str, req: ApprovalRequest,
            extra: dict[str, Any] | None = None) -> None:
    session.flush()
    audit.record(session.connection(), action, req.subject, {
        "request_id": req.request_id, "kind": req.kind, "requested_by": req.requested_by,
        "amount_fen": req.amount, **(extra or {})})


# -- asking ---------------------------------------------------------------------------------------

def request(session: Session, *, kind_name: str, payload: dict[str, Any], reason: str,
            maker: Principal, clock: Clock) -> ApprovalRequest:
    """Ask for a change (``pending``). Refused: an unknown kind, a role without
    ``approvals:request:<kind>``, a bad payload (naming the field), a subject that already has a
    pending request of this kind (409 ``already_requested`` naming it)."""
    k = kind(kind_name)
    if not k.requested_by_people:
        raise ValidationError(f"{kind_name} requests are raised by the collections rules "
                              "(a suspension order awaiting approval), not asked for")
    _may(maker, f"approvals:request:{kind_name}", f"ask for a {kind_name}")
    if not isinstance(payload, dict):
        raise ValidationError("payload: an object")
    return _store(session, kind_name, payload, _clean_reason(reason, "a request"),
                  maker.username, clock)


def _store(session: Session, kind_name: str, payload: dict[str, Any], reason: str, maker: str,
           clock: Clock) -> ApprovalRequest:
    k = kind(kind_name)
    checked = k.check(session, payload, clock)
    now = clock.now()
    key = f"{kind_name}:{checked.subject}"
    req = ApprovalRequest(kind=kind_name, subject=checked.subject,
                          payload=json.dumps(checked.payload, ensure_ascii=False, sort_keys=True),
                          amount=checked.amount, reason=reason, state="pending",
                          requested_by=maker, requested_at=now,
                          expires_at=now + timedelta(days=k.expiry_days), open_key=key)
    try:
        with session.begin_nested():
            session.add(req)
            session.flush()
    except IntegrityError:
        other = session.scalars(select(ApprovalRequest.request_id).where(
            ApprovalRequest.open_key == key)).first()
        raise AlreadyRequested(f"{kind_name} of {checked.subject} is already requested "
                               f"(request {other}, pending)") from None
    _record(session, "approval.requested", req, {"reason": reason, "payload": _audit_payload(req)})
    return req


def _audit_payload(req: ApprovalRequest) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(req.payload)
    if "toml" in data:  # the chain keeps the file's digest, not its text
        import hashlib

        data["toml_sha256"] = hashlib.sha256(str(data.pop("toml")).encode("utf-8")).hexdigest()
    return data


def raise_rule_requests(session: Session, clock: Clock) -> int:
    """A request for every suspension order the rules raised that waits for approval and has
    none pending yet (the dunning ladder is the maker); a pending one whose order no longer
    waits is ``withdrawn``. Returns how many were raised."""
    from dianfei.collections.service import stop_cases_awaiting_approval

    awaiting = stop_cases_awaiting_approval(session)
    still = {int(c["case_id"]) for c in awaiting}
    # an order that no longer waits (the customer paid, agreed a plan, the case was cancelled)
    # takes its request with it: nobody is asked to approve a stop that will not happen
    for req in session.scalars(select(ApprovalRequest).where(
            ApprovalRequest.kind == "suspension", ApprovalRequest.state == "pending")
            .with_for_update()):
        if int(json.loads(req.payload)["case_id"]) not in still:
            req.state, req.decided_by, req.decided_at = "withdrawn", "system", clock.now()
            req.open_key = None
            req.decision_reason = "the suspension order no longer awaits approval"
            _record(session, "approval.withdrawn", req, {"reason": req.decision_reason})
    raised = 0
    for case in awaiting:
        key = f"suspension:{case['account_id']}"
        if session.scalars(select(ApprovalRequest.request_id).where(
                ApprovalRequest.open_key == key)).first() is not None:
            continue
        try:
            _store(session, "suspension", {"case_id": int(case["case_id"])},
                   f"suspension order for arrears on bill {case['bill_id']} (stop case "
                   f"{case['case_id']})", RULE_MAKER, clock)
        except AlreadyRequested:
            continue  # raised meanwhile by a concurrent caller (its savepoint rolled back)
        raised += 1
    return raised


# -- deciding -------------------------------------------------------------------------------------

def _for_decision(session: Session, request_id: int, checker: Principal,
                  now: datetime) -> ApprovalRequest:
    # a write first: it takes the row's lock on PostgreSQL and the database's write lock on
    # SQLite (where FOR UPDATE does nothing) before anything is read, so a second checker waits
    # and then reads the request as the first one left it
    session.execute(update(ApprovalRequest).where(ApprovalRequest.request_id == request_id)
                    .values(state=ApprovalRequest.state)
                    .execution_options(synchronize_session=False))
    req = session.scalars(select(ApprovalRequest).where(
        ApprovalRequest.request_id == request_id).with_for_update()).first()
    if req is None:
        raise NotFoundError(f"approval request {request_id} does not exist")
    _may(checker, f"approvals:decide:{req.kind}", f"decide a {req.kind}")
    if req.state != "pending":
        by = f" by {req.decided_by}" if req.decided_by else ""
        raise AlreadyDecided(f"approval request {request_id} is already {req.state}{by}")
    if now >= req.expires_at:
        raise RequestExpired(f"approval request {request_id} expired at "
                             f"{req.expires_at.isoformat()}: ask again")
    if checker.username == req.requested_by:
        raise MakerIsChecker(f"{checker.username} asked for request {request_id}: a second "
                             "person must decide it")
    return req


def approve(db: Database, request_id: int, *, checker: Principal, clock: Clock) -> dict[str, Any]:
    """Approve and execute, in one transaction. The change's typed error propagates and the
    request stays pending. A bill correction with a rebill then bills the account again (its
    own transactions; the result is added to the request)."""
    now = clock.now()
    with db.session() as s:
        req = _for_decision(s, request_id, checker, now)
        k = kind(req.kind)
        payload = json.loads(req.payload)
        result = k.execute(Execution(session=s, db=db, clock=clock, payload=payload,
                                     reason=req.reason, maker=req.requested_by,
                                     checker=checker.username, request_id=req.request_id))
        req.state, req.decided_by, req.decided_at = "executed", checker.username, now
        req.open_key, req.result = None, json.dumps(result, ensure_ascii=False, sort_keys=True)
        _record(s, "approval.approved", req, {"approved_by": checker.username,
                                               "result": result})
    if k.after_commit is not None:
        more = k.after_commit(db, clock, payload)
        if more:
            with db.session() as s:
                row = s.get(ApprovalRequest, request_id)
                assert row is not None
                row.result = json.dumps({**json.loads(row.result or "{}"), **more},
                                        ensure_ascii=False, sort_keys=True)
    return show(db, request_id)


def reject(session: Session, request_id: int, *, checker: Principal, reason: str,
           clock: Clock) -> ApprovalRequest:
    """Refuse with a reason: nothing of the change is made. The maker cannot refuse their own
    request either (they may let it expire)."""
    why = _clean_reason(reason, "a refusal")
    now = clock.now()
    req = _for_decision(session, request_id, checker, now)
    req.state, req.decided_by, req.decided_at = "rejected", checker.username, now
    req.decision_reason, req.open_key = why, None
    _record(session, "approval.rejected", req, {"rejected_by": checker.username, "reason": why})
    return req


def expire_due(session: Session, clock: Clock) -> int:
    """Close every pending request past its expiry (``expired``, decided by ``system``), each
    with its audit record. Returns how many."""
    now = clock.now()
    due = list(session.scalars(select(ApprovalRequest).where(
        ApprovalRequest.state == "pending", ApprovalRequest.expires_at <= now)
        .order_by(ApprovalRequest.request_id).with_for_update()))
    for req in due:
        req.state, req.decided_by, req.decided_at, req.open_key = "expired", "system", now, None
        _record(session, "approval.expired", req, {"expired_at": req.expires_at.isoformat()})
    return len(due)


def housekeeping(db: Database, clock: Clock) -> dict[str, int]:
    """Expire what is due and raise the rules' requests, in one committed transaction (so a
    refusal that follows cannot roll them back): before listing or deciding, and daily as the
    ``approvals_housekeeping`` job, so that a request nobody looks at still expires on time.
    Returns ``{"expired", "raised"}``."""
    with db.session() as s:
        expired = expire_due(s, clock)
        raised = raise_rule_requests(s, clock)
    return {"expired": expired, "raised": raised}


def pending_suspension(db: Database, case_id: int) -> int:
    """The pending request for stop case ``case_id`` (``collect approve CASE``)."""
    with db.session() as s:
        for req in s.scalars(select(ApprovalRequest).where(
                ApprovalRequest.kind == "suspension", ApprovalRequest.state == "pending")):
            if json.loads(req.payload).get("case_id") == case_id:
                return req.request_id
    raise ConflictError(f"stop case {case_id} is not a suspension order awaiting approval")


# -- reading --------------------------------------------------------------------------------------

def to_json(req: ApprovalRequest) -> dict[str, Any]:
    return {"request_id": req.request_id, "kind": req.kind, "label": kinds()[req.kind].label,
            "subject": req.subject, "payload": json.loads(req.payload),
            "amount": None if req.amount is None else fmt_yuan(int(req.amount)),
            "reason": req.reason, "state": req.state, "requested_by": req.requested_by,
            "requested_at": req.requested_at.isoformat(), "expires_at": req.expires_at.isoformat(),
            "decided_by": req.decided_by,
            "decided_at": req.decided_at.isoformat() if req.decided_at else None,
            "decision_reason": req.decision_reason,
            "result": json.loads(req.result) if req.result else None}


def show(db: Database, request_id: int) -> dict[str, Any]:
    with db.session() as s:
        req = s.get(ApprovalRequest, request_id)
        if req is None:
            raise NotFoundError(f"approval request {request_id} does not exist")
        return to_json(req)


def list_requests(db: Database, *, kind_name: str | None = None, state: str | None = None,
                  limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """Requests, newest first, filtered by kind and state: ``{"total", "limit", "offset",
    "items"}``."""
    if kind_name is not None and kind_name not in APPROVAL_KINDS:
        raise ValidationError(f"kind: one of {', '.join(APPROVAL_KINDS)}, got {kind_name!r}")
    if state is not None and state not in STATES:
        raise ValidationError(f"state: one of {', '.join(STATES)}, got {state!r}")
    if not 1 <= limit <= 500 or offset < 0:
        raise ValidationError("limit: 1 to 500; offset: 0 or more")
    where = []
    if kind_name is not None:
        where.append(ApprovalRequest.kind == kind_name)
    if state is not None:
        where.append(ApprovalRequest.state == state)
    with db.session() as s:
        total = int(s.execute(select(func.count()).select_from(ApprovalRequest)
                              .where(*where)).scalar_one())
        rows = s.scalars(select(ApprovalRequest).where(*where)
                         .order_by(ApprovalRequest.request_id.desc()).limit(limit).offset(offset))
        return {"total": total, "limit": limit, "offset": offset,
                "items": [to_json(r) for r in rows]}
