"""The kinds of change a second person decides, each with how its request is checked when asked
for and how it is executed once approved — always through the owning package's service.

A kind's ``check`` validates the payload (a clear error naming the field) and returns the
subject, the amount it is about (fen, for money kinds) and the payload as stored. ``execute``
runs inside the approval's transaction: if it raises, nothing of it and nothing of the approval
is kept. ``after_commit`` (bill corrections with a rebill only) runs the one-account bill run,
which manages its own transactions, once the cancellation is committed.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from dianfei.core.clock import Clock
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.core.money import fmt_yuan
from dianfei.security.service import APPROVAL_KINDS

if TYPE_CHECKING:
    from dianfei.db.engine import Database

CONFIG = Path(__file__).with_name("kinds.toml")


@dataclass(frozen=True)
class Checked:
    subject: str
    amount: int | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class Execution:
    """What an approved request's change is given."""

    session: Session
    db: Database
    clock: Clock
    payload: Mapping[str, Any]
    reason: str
    maker: str
    checker: str
    request_id: int


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    expiry_days: int
    #: (session, payload, clock): the clock is the request's (a rule about dates reads it)
    check: Callable[[Session, Mapping[str, Any], Clock], Checked]
    execute: Callable[[Execution], dict[str, Any]]
    after_commit: Callable[[Database, Clock, Mapping[str, Any]], dict[str, Any]] | None = None
    #: whether a person may ask for it (suspensions are raised by the dunning ladder's rules)
    requested_by_people: bool = True


def _text(payload: Mapping[str, Any], key: str, limit: int = 64) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"payload.{key}: required text")
    if len(value) > limit:
        raise ValidationError(f"payload.{key}: at most {limit} characters")
    return value.strip()


def _only(payload: Mapping[str, Any], allowed: set[str], kind: str) -> None:
    extra = sorted(set(payload) - allowed)
    if extra:
        raise ValidationError(f"payload: unknown key(s) {', '.join(extra)} for a {kind} "
                              f"(expected {', '.join(sorted(allowed))})")


# -- late-fee waiver (违约金减免) ------------------------------------------------------------------

def _check_waiver(session: Session, payload: Mapping[str, Any], _clock: Clock) -> Checked:
    from dianfei.collections.service import late_fees_of_bill

    _only(payload, {"bill_id"}, "waiver")
    bill_id = _text(payload, "bill_id")
    amount = late_fees_of_bill(session, bill_id)
    if amount <= 0:
        raise NotFoundError(f"bill {bill_id} has no late fees to waive")
    return Checked(bill_id, amount, {"bill_id": bill_id})


def _waive(ex: Execution) -> dict[str, Any]:
    from dianfei.collections.service import waive_late_fees

    w = waive_late_fees(ex.session, bill_id=str(ex.payload["bill_id"]), reason=ex.reason,
                        requested_by=ex.maker, approved_by=ex.checker, clock=ex.clock)
    return {"waiver_id": w.waiver_id, "bill_id": w.bill_id, "account_id": w.account_id,
            "amount": fmt_yuan(int(w.amount))}


# -- write-off (核销) ------------------------------------------------------------------------------

def _check_write_off(session: Session, payload: Mapping[str, Any], _clock: Clock) -> Checked:
    from dianfei.collections.service import pending_fee
    from dianfei.ledger.service import open_amount

    _only(payload, {"reference"}, "write-off")
    reference = _text(payload, "reference", 96)
    amount = open_amount(session, reference)
    if amount is None:
        raise NotFoundError(f"no bill or late fee {reference!r} is open in the ledger")
    if amount <= 0:
        raise ConflictError(f"{reference} has nothing open to write off")
    # a bill's late fee accrued since the last month end goes with it: the checker sees it all
    session.flush()
    return Checked(reference, amount + pending_fee(session.connection(), reference),
                   {"reference": reference})


def _write_off(ex: Execution) -> dict[str, Any]:
    from dianfei.collections.service import write_off_debt

    done = write_off_debt(ex.session, clock=ex.clock, reference=str(ex.payload["reference"]),
                          reason=f"write-off (approval {ex.request_id}): {ex.reason}")
    entry = done.entry
    return {"entry_id": entry.entry_id, "reference": entry.reference,
            "account_id": entry.account_id, "amount": fmt_yuan(-int(entry.amount)),
            "total": fmt_yuan(done.amount),
            "late_fee": (None if done.fee is None else
                         {"entry_id": done.fee.entry_id, "reference": done.fee.reference,
                          "amount": fmt_yuan(-int(done.fee.amount))})}


# -- account closure (销户: supply off six months, arrears written off) ----------------------------

def _check_account_closure(session: Session, payload: Mapping[str, Any], clock: Clock) -> Checked:
    from dianfei.collections.service import closure_check
    from dianfei.core.clock import business_date

    _only(payload, {"account_id"}, "account closure")
    account_id = _text(payload, "account_id", 32)
    session.flush()
    facts = closure_check(session.connection(), account_id, business_date(clock.now()))
    return Checked(account_id, int(facts["owed"]), {"account_id": account_id})


def _close_account(ex: Execution) -> dict[str, Any]:
    from dianfei.collections.service import close_account

    done = close_account(ex.session, str(ex.payload["account_id"]), clock=ex.clock,
                         reason=f"approval {ex.request_id}: {ex.reason}", requested_by=ex.maker,
                         approved_by=ex.checker)
    return {"account_id": done["account_id"], "closed_on": done["closed_on"].isoformat(),
            "written_off": fmt_yuan(done["written_off"]), "items": done["items"],
            "customer_closed": done["customer_closed"], "case_id": done["case_id"]}


# -- bill correction (账单更正: cancel, optionally rebill) -----------------------------------------

def _check_bill_correction(session: Session, payload: Mapping[str, Any], _clock: Clock) -> Checked:
    from dianfei.billing.service import bills_by_id

    _only(payload, {"bill_id", "rebill"}, "bill correction")
    bill_id = _text(payload, "bill_id")
    rebill = payload.get("rebill", False)
    if not isinstance(rebill, bool):
        raise ValidationError("payload.rebill: true or false")
    bills = bills_by_id(session.connection(), [bill_id])
    if bills.height == 0:
        raise NotFoundError(f"bill {bill_id} does not exist")
    if bills["status"][0] == "cancelled":
        raise ConflictError(f"bill {bill_id} is already cancelled")
    return Checked(bill_id, int(bills["amount"][0]), {"bill_id": bill_id, "rebill": rebill})


def _cancel_bill(ex: Execution) -> dict[str, Any]:
    from dianfei.billing.service import cancel_bill

    bill = cancel_bill(ex.session, ex.clock, str(ex.payload["bill_id"]), ex.reason)
    return {"cancelled": bill.bill_id, "account_id": bill.account_id, "period": bill.period,
            "amount": fmt_yuan(int(bill.amount)), "rebill": bool(ex.payload.get("rebill"))}


def _rebill(db: Database, clock: Clock, payload: Mapping[str, Any]) -> dict[str, Any]:
    if not payload.get("rebill"):
        return {}
    from dianfei.billing.service import bill_again

    res = bill_again(db, clock, str(payload["bill_id"]), db.settings.billing.tariff_dir)
    return {"rebilled": res.billed, "exceptions": res.exceptions}


# -- suspension order (停电审批) -------------------------------------------------------------------

def _check_suspension(session: Session, payload: Mapping[str, Any], _clock: Clock) -> Checked:
    from dianfei.collections.service import stop_cases_awaiting_approval

    _only(payload, {"case_id"}, "suspension")
    case_id = payload.get("case_id")
    if not isinstance(case_id, int) or isinstance(case_id, bool):
        raise ValidationError("payload.case_id: a stop case number")
    for c in stop_cases_awaiting_approval(session):
        if c["case_id"] == case_id:
            return Checked(str(c["account_id"]), None, {"case_id": case_id,
                                                        "bill_id": c["bill_id"]})
    raise ConflictError(f"stop case {case_id} is not a suspension order awaiting approval")


def _approve_stop(ex: Execution) -> dict[str, Any]:
    from dianfei.collections.service import approve_stop

    case = approve_stop(ex.session, int(ex.payload["case_id"]), approver=ex.checker,
                        clock=ex.clock)
    return {"case_id": case.case_id, "account_id": case.account_id, "status": case.status,
            "approved_by": case.approved_by}


# -- tariff change (电价调整) ---------------------------------------------------------------------

_TOML_LIMIT = 200_000


def _check_tariff_change(session: Session, payload: Mapping[str, Any], _clock: Clock) -> Checked:
    from dianfei.tariffs.service import check_tariff_text

    _only(payload, {"tariff_id", "toml"}, "tariff change")
    tariff_id = _text(payload, "tariff_id")
    text = payload.get("toml")
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("payload.toml: the full text of the tariff file")
    if len(text) > _TOML_LIMIT:
        raise ValidationError(f"payload.toml: at most {_TOML_LIMIT} characters")
    check_tariff_text(tariff_id, text)
    return Checked(tariff_id, None, {"tariff_id": tariff_id, "toml": text})


def _install_tariff(ex: Execution) -> dict[str, Any]:
    from dianfei.audit import service as audit
    from dianfei.tariffs.service import install_tariff, tariff_change_plan

    tariff_id, text = str(ex.payload["tariff_id"]), str(ex.payload["toml"])
    directory = ex.db.settings.billing.tariff_dir
    plan = tariff_change_plan(directory, tariff_id, text)
    # the record before the file: a file that cannot be written rolls the record back with the
    # approval; the file is the last thing done before the commit (docs/approvals.md)
    audit.record(ex.session.connection(), "tariff.changed", tariff_id, {
        **plan, "requested_by": ex.maker, "approved_by": ex.checker,
        "approval": ex.request_id})
    ex.session.flush()
    install_tariff(directory, tariff_id, text)
    return plan


_BEHAVIOUR: Mapping[str, tuple[Any, ...]] = {
    "waiver": (_check_waiver, _waive, None, True),
    "write_off": (_check_write_off, _write_off, None, True),
    "bill_correction": (_check_bill_correction, _cancel_bill, _rebill, True),
    "suspension": (_check_suspension, _approve_stop, None, False),
    "tariff_change": (_check_tariff_change, _install_tariff, None, True),
    "account_closure": (_check_account_closure, _close_account, None, True),
}


@lru_cache(maxsize=1)
def kinds() -> dict[str, Kind]:
    """Every kind, with its label and expiry from kinds.toml."""
    with CONFIG.open("rb") as fh:
        data = tomllib.load(fh)
    if set(data) != set(APPROVAL_KINDS) or set(_BEHAVIOUR) != set(APPROVAL_KINDS):
        raise ValidationError(f"{CONFIG.name}: one table per kind: {', '.join(APPROVAL_KINDS)}")
    out = {}
    for name in APPROVAL_KINDS:
        raw = data[name]
        days = raw.get("expiry_days")
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 365:
            raise ValidationError(f"{CONFIG.name} [{name}] expiry_days: 1 to 365 days")
        check, execute, after, people = _BEHAVIOUR[name]
        out[name] = Kind(name, str(raw.get("label", name)), days, check, execute, after, people)
    return out


def kind(name: str) -> Kind:
    try:
        return kinds()[name]
    except KeyError:
        raise ValidationError(f"kind: one of {', '.join(APPROVAL_KINDS)}, got {name!r}") from None
