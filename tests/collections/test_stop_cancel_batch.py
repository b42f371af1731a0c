"""Closing stop cases cancels their pending meter commands and open tasks — one case at a time
(``stops.cancel`` without a batch) and a whole pass's closed cases together when the pass is
recorded (``CaseEvents`` + ``record_batch``): the same rows end the same way, and nothing of
another case, nor a command already sent, is touched."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from types import SimpleNamespace

from sqlalchemy import select

from dianfei.collections import stops
from dianfei.collections.models import CollectionTask, MeterCommand, StopCase
from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.db.engine import Database

NOW = datetime.combine(date(2026, 3, 20), time(9), tzinfo=BUSINESS_TZ)


def _cases(db: Database, accounts: list[str]) -> dict[str, int]:
    ids = {}
    with db.session() as s:
        for a in accounts:
            case = StopCase(account_id=a, customer_id=a, customer_class="residential",
                            bill_id=f"{a}-202601-1", mode="postpaid", status="ordered",
                            opened_at=NOW.astimezone(UTC), notice_key=f"n:{a}")
            s.add(case)
            s.flush()
            ids[a] = case.case_id
            for action, status in (("trip", "pending"), ("close", "done")):
                s.add(MeterCommand(key=f"{action}:{a}", case_id=case.case_id, account_id=a,
                                   meter_id=f"M{a}", action=action, status=status,
                                   next_attempt_at=NOW.astimezone(UTC),
                                   created_at=NOW.astimezone(UTC)))
            for kind, status in (("approval", "open"), ("visit", "done")):
                s.add(CollectionTask(key=f"{kind}:{a}", account_id=a, customer_id=a, kind=kind,
                                     status=status, case_id=case.case_id,
                                     created_at=NOW.astimezone(UTC)))
    return ids


def _state(db: Database) -> dict[tuple[str, str], str]:
    with db.session() as s:
        out = {(c.account_id, f"cmd:{c.action}"): c.status for c in s.scalars(select(MeterCommand))}
        out |= {(t.account_id, f"task:{t.kind}"): t.status
                for t in s.scalars(select(CollectionTask))}
        out |= {(c.account_id, "case"): c.status for c in s.scalars(select(StopCase))}
    return out


def _ctx() -> SimpleNamespace:
    return SimpleNamespace(now=NOW, clock=FixedClock(NOW))


def test_a_pass_cancels_its_closed_cases_together_as_one_by_one_would(db: Database) -> None:
    ids = _cases(db, ["A", "B", "C", "D"])
    # one at a time: A
    with db.session() as s:
        stops.cancel(_ctx(), s, s.get(StopCase, ids["A"]), "paid")  # type: ignore[arg-type]
    one = _state(db)
    assert (one[("A", "cmd:trip")], one[("A", "task:approval")]) == ("cancelled", "cancelled")
    # a pass: B and C closed together, D stays live
    with db.session() as s:
        events = stops.CaseEvents()
        for a in ("B", "C"):
            stops.cancel(_ctx(), s, s.get(StopCase, ids[a]), "paid", events=events)  # type: ignore[arg-type]
        assert events.cancelled == [ids["B"], ids["C"]]
        stops.record_batch(s, events)
        assert events.cancelled == []
        # the session's own objects are up to date too
        [trip_b] = s.scalars(select(MeterCommand).where(MeterCommand.key == "trip:B"))
        assert trip_b.status == "cancelled"
    after = _state(db)
    for a in ("A", "B", "C"):
        assert after[(a, "case")] == "closed"
        assert after[(a, "cmd:trip")] == "cancelled" and after[(a, "task:approval")] == "cancelled"
        # what was finished stays finished
        assert after[(a, "cmd:close")] == "done" and after[(a, "task:visit")] == "done"
    assert after[("D", "case")] == "ordered"
    assert after[("D", "cmd:trip")] == "pending" and after[("D", "task:approval")] == "open"
    # the two closed by the pass end exactly as the one closed alone
    assert {k[1]: v for k, v in after.items() if k[0] == "B"} == \
        {k[1]: v for k, v in after.items() if k[0] == "A"}


def test_a_pass_of_more_cases_than_one_statement_takes(db: Database, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(stops, "CANCEL_CHUNK", 2)
    ids = _cases(db, ["A", "B", "C", "D", "E"])
    with db.session() as s:
        events = stops.CaseEvents()
        for a in ("A", "B", "C", "D", "E"):
            stops.cancel(_ctx(), s, s.get(StopCase, ids[a]), "topped_up", events=events)  # type: ignore[arg-type]
        stops.record_batch(s, events)
    after = _state(db)
    assert all(after[(a, "cmd:trip")] == "cancelled" for a in "ABCDE")
    assert all(after[(a, "task:approval")] == "cancelled" for a in "ABCDE")
