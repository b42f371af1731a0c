"""A worker killed (SIGKILL) in a notice dispatch after the SMS gateway accepted the messages and
before the outcomes were recorded: the rerun sends none of those SMS again — they are on the
notify worklist as "outcome unknown" for a person to check against the provider's log — while
the letter (an idempotent channel) is written again in place and the notice that fell due
meanwhile goes out once. Nothing is left 'sending' or forgotten."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from sqlalchemy import text

from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.db.engine import Database
from dianfei.notify import service as notify
from tests.factories import Person, load_people
from tests.fakes.sms_gateway import ACCESS_KEY_ID, ACCESS_KEY_SECRET, SIGN_NAME, FakeSmsGateway
from tests.jobs.faults import calendar, intact, killed, worker
from tests.notify._util import REMINDER, SMS_TEMPLATES, STOP

SCHEDULE = """
[[job]]
name = "notify"
kind = "notify_dispatch"
every = "day"
at = "10:00"
"""

DAY = "2026-11-02"


def _at(hhmm: str) -> str:
    return f"{DAY}T{hhmm}:00+08:00"


def _config(gw: FakeSmsGateway) -> str:
    templates = "\n".join(f'{k} = "{v}"' for k, v in SMS_TEMPLATES.items())
    return (f'[notify.sms]\nendpoint = "{gw.endpoint}"\naccess_key_id = "{ACCESS_KEY_ID}"\n'
            f'access_key_secret = "{ACCESS_KEY_SECRET}"\nsign_name = "{SIGN_NAME}"\n'
            f"[notify.sms.templates]\n{templates}\n")


def _enqueue(db: Database) -> None:
    clock = FixedClock(datetime.fromisoformat(_at("09:50")))
    later = datetime.fromisoformat(_at("10:08")).astimezone(BUSINESS_TZ)
    notices = [notify.Notice(key=f"r:{c}", account_id=c, customer_id=c, notice="reminder",
                             channel="sms", context={**REMINDER, "account_id": c})
               for c in ("C1", "C2", "C3")]
    notices.append(notify.Notice(key="s:C4", account_id="C4", customer_id="C4",
                                 notice="stop_notice", channel="letter",
                                 context={**STOP, "account_id": "C4"}))
    # due only after the crash: the rerun must send it (the work goes on)
    notices.append(notify.Notice(key="r:C5", account_id="C5", customer_id="C5", notice="reminder",
                                 channel="sms", context={**REMINDER, "account_id": "C5"},
                                 not_before=later))
    with db.session() as s:
        notify.enqueue_many(s, notices, clock=clock)


def _outbox(db: Database) -> dict[str, tuple[str, int]]:
    with db.engine.connect() as conn:
        return {k: (st, n) for k, st, n in conn.execute(text(
            "SELECT key, status, attempts FROM notify_outbox ORDER BY key"))}


def _attempts(db: Database) -> list[tuple[str, int, str | None]]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(  # type: ignore[misc]
            "SELECT o.key, a.attempt_no, a.outcome FROM notify_attempts a "
            "JOIN notify_outbox o ON o.outbox_id = a.outbox_id ORDER BY o.key, a.attempt_no"))]


def test_a_dispatch_killed_after_the_gateway_accepted_resends_nothing_blindly(
        db: Database, db_env: dict[str, str], tmp_path: Path) -> None:
    load_people(db, [Person(f"C{i}") for i in range(1, 6)])
    _enqueue(db)
    with FakeSmsGateway(templates={code: [] for code in SMS_TEMPLATES.values()}) as gw:
        env = {**db_env, "DIANFEI_CONFIG": calendar(tmp_path, SCHEDULE, _config(gw))}

        # the gateway accepted the three due SMS and the letter was written; then the worker died
        killed(worker(env, _at("10:00"), DIANFEI_FAULT_KILL_AT="notify.sent_unrecorded"))
        assert sorted(m["params"]["account_id"] for m in gw.sent) == ["C1", "C2", "C3"]
        assert _outbox(db) == {"r:C1": ("sending", 1), "r:C2": ("sending", 1),
                               "r:C3": ("sending", 1), "s:C4": ("sending", 1),
                               "r:C5": ("queued", 0)}
        with db.engine.connect() as conn:
            assert tuple(conn.execute(text("SELECT status, attempts FROM job_runs")).one()) == (
                "running", 1)

        # after the lease (and notify's sending timeout) the next worker takes the run over
        later = json.loads(worker(env, _at("10:15")).stdout)
        assert later["requeued_stale"] == 1
        assert [(r["job"], r["status"], r["attempt"]) for r in later["ran"]] == [
            ("notify", "done", 2)]
        result = later["ran"][0]["result"]
        assert (result["recovered_for_review"], result["recovered_retried"], result["sent"]) == (
            3, 1, 2)

        # no SMS went out twice: the gateway saw C1–C3 once each, and C5 once
        assert sorted(m["params"]["account_id"] for m in gw.sent) == ["C1", "C2", "C3", "C5"]
    assert _outbox(db) == {"r:C1": ("failed", 1), "r:C2": ("failed", 1), "r:C3": ("failed", 1),
                           "s:C4": ("sent", 2), "r:C5": ("sent", 1)}
    # the three SMS are on the worklist as an unknown outcome, for a person to check
    work = {d.key: d for d in notify.worklist(db)}
    assert sorted(work) == ["r:C1", "r:C2", "r:C3"]
    assert all(d.last_error and d.last_error.startswith("outcome unknown") for d in work.values())
    assert _attempts(db) == [("r:C1", 1, "unknown"), ("r:C2", 1, "unknown"),
                             ("r:C3", 1, "unknown"), ("r:C5", 1, "sent"),
                             ("s:C4", 1, "unknown"), ("s:C4", 2, "sent")]
    # the letter is one file, written again in place
    assert len(list((Path(db_env["DIANFEI_DATA_DIR"]) / "letters").glob("*.pdf"))) == 1
    intact(db_env)
