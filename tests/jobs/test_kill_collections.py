"""A worker killed (SIGKILL) in the middle of a collections day — after the day's late fees were
posted, after the ladder's notices, tasks and stop cases were written, or after a meter obeyed a
trip that was not recorded yet — and the run taken over by the next worker once its lease ran
out: the day ends with the rows of an uninterrupted day. No late fee, notice, event, task, stop
case or meter command twice, none lost; no SMS sent twice; the audit chain and the ledger hold.

A trip the meter obeyed but the crash left unrecorded is sent again by the rerun (the meter is
simply in the state asked for, docs/collections.md); it is still one command, one suspension."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from dianfei.collections.service import run_day
from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.core.settings import load_settings
from dianfei.db.engine import Database, open_database
from dianfei.ledger import service as ledger
from dianfei.metering.dlt645.simulator import MeterSimulator, SimMeter
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.factories import Person, load_people
from tests.fakes.sms_gateway import ACCESS_KEY_ID, ACCESS_KEY_SECRET, SIGN_NAME, FakeSmsGateway
from tests.jobs.faults import calendar, copy_of, intact, killed, rows, worker
from tests.notify._util import SMS_TEMPLATES

SCHEDULE = """
[[job]]
name = "collections"
kind = "collections_day"
every = "day"
at = "09:00"
"""

#: a Tuesday and the last day of a month: late fees reach the ledger, stops may be carried out
DAY = date(2026, 3, 31)
#: each account's bill is due on …: A's stop was ordered the day before (a trip today), B
#: reaches the stop notice today (SMS and letter), C its first reminder
DUE = {"A": date(2026, 1, 29), "B": date(2026, 3, 1), "C": date(2026, 3, 30)}
#: the days collections ran before (fewer than every day: the ladder moves the same)
BEFORE = [date(2026, 1, 30), date(2026, 2, 8), date(2026, 2, 28), date(2026, 3, 2),
          date(2026, 3, 11), date(2026, 3, 30)]

#: the day's end state, without the instants at which it was written (the rerun is later)
STATE = {
    "ledger": "SELECT account_id, kind, amount, reference, business_date, due_on "
              "FROM ledger_entries ORDER BY reference, kind",
    "accruals": "SELECT bill_id, through, raw, posted, accrued, waived, closed_on "
                "FROM late_fee_accruals ORDER BY bill_id",
    "events": "SELECT key, account_id, type, amount, balance_after, level, notice, channel, "
              "bill_id FROM collection_events ORDER BY key",
    "dunning": "SELECT account_id, ladder, level, bill_id, since FROM dunning_state "
               "ORDER BY account_id",
    "tasks": "SELECT key, account_id, kind, status FROM collection_tasks ORDER BY key",
    "cases": "SELECT account_id, bill_id, status, method, closed_reason FROM stop_cases "
             "ORDER BY account_id, bill_id",
    "commands": "SELECT key, account_id, meter_id, action, status, attempts, last_error "
                "FROM meter_commands ORDER BY key",
    "outbox": "SELECT key, account_id, notice, channel, status, attempts FROM notify_outbox "
              "ORDER BY key",
    "runs": "SELECT day, finished_at IS NOT NULL FROM collection_runs ORDER BY day",
}


def _at(day: date, hh: int = 9, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=BUSINESS_TZ)


def _populate(db: Database) -> None:
    """Three residential customers with a remote meter each and one bill each (a real bill row
    with its line, debited in the ledger), and the collections days before DAY already run."""
    load_people(db, [Person(c) for c in DUE])
    clock = FixedClock(_at(date(2026, 1, 3)))
    with db.engine.begin() as conn:
        for i, (cid, due) in enumerate(DUE.items(), start=1):
            conn.execute(text("UPDATE meters SET comm_address = :a WHERE account_id = :c"),
                         {"a": f"{i:012d}", "c": cid})
            bill = f"{cid}-{due:%Y%m}-1"
            conn.execute(text(
                "INSERT INTO bills (bill_id, account_id, customer_id, period, version, issued_on, "
                "due_on, amount, kwh, tariff_id, tariff_version, estimated, multiplier, status) "
                "VALUES (:b, :c, :c, :p, 1, :i, :d, 20000, 37175, 'cn-zj-residential', "
                "'2012-07-01', false, 1, 'issued')"),
                {"b": bill, "c": cid, "p": f"{due:%Y-%m}", "i": date(due.year, due.month, 1)
                 if due.day > 15 else due.replace(day=1), "d": due})
            conn.execute(text(
                "INSERT INTO bill_lines (bill_id, line_no, code, description, quantity, unit, "
                "unit_price, amount) VALUES (:b, 1, 'energy', '电度电费', 37175, 'kWh', 5380, "
                "20000)"), {"b": bill})
    with db.session() as s:
        for cid, due in DUE.items():
            ledger.post_entry(s, clock=clock, account_id=cid, customer_id=cid, kind="bill",
                              amount=20000, reference=f"{cid}-{due:%Y%m}-1", due_on=due)
    switch, notifier = FakeSwitch(), FakeNotifier()
    for day in BEFORE:
        run_day(db, day, clock=FixedClock(_at(day)), switch=switch, notifier=notifier)


def _config(gw: FakeSmsGateway, sim: MeterSimulator) -> str:
    templates = "\n".join(f'{k} = "{v}"' for k, v in SMS_TEMPLATES.items())
    return (f'[metering.dlt645]\nhost = "{sim.host}"\nport = {sim.port}\n'
            f'[notify.sms]\nendpoint = "{gw.endpoint}"\naccess_key_id = "{ACCESS_KEY_ID}"\n'
            f'access_key_secret = "{ACCESS_KEY_SECRET}"\nsign_name = "{SIGN_NAME}"\n'
            f"[notify.sms.templates]\n{templates}\n")


def _meters() -> list[SimMeter]:
    return [SimMeter(f"{i:012d}", total=Decimal("1000")) for i in range(1, len(DUE) + 1)]


def _sms(sent: list[dict[str, object]]) -> Counter[tuple[object, object]]:
    return Counter((m["template_code"], m["params"].get("account_id"))  # type: ignore[attr-defined]
                   for m in sent)


@pytest.mark.parametrize("point", ["collections.late_fees_posted", "collections.dunning_written",
                                   "collections.command_sent"])
def test_a_killed_collections_day_is_finished_once_by_the_next_worker(
        point: str, db: Database, db_env: dict[str, str], tmp_path: Path) -> None:
    _populate(db)
    before = rows(db, STATE)
    with (copy_of(db, db_env, tmp_path) as clean_env,
          FakeSmsGateway(templates={c: [] for c in SMS_TEMPLATES.values()}) as gw,
          MeterSimulator(_meters(), now=FixedClock(_at(DAY, 9, 5))) as sim,
          MeterSimulator(_meters(), now=FixedClock(_at(DAY, 9, 5))) as clean_sim):
        env = {**db_env, "DIANFEI_CONFIG": calendar(tmp_path / "killed", SCHEDULE,
                                                    _config(gw, sim))}
        killed(worker(env, _at(DAY).isoformat(), DIANFEI_FAULT_KILL_AT=point))
        partial = rows(db, STATE)
        day, finished = partial["runs"][-1]
        assert partial != before and (str(day), bool(finished)) == (str(DAY), False)

        later = json.loads(worker(env, _at(DAY, 9, 10).isoformat()).stdout)
        assert later["requeued_stale"] == 1
        assert [(r["job"], r["status"], r["attempt"]) for r in later["ran"]] == [
            ("collections", "done", 2)]
        resumed = rows(db, STATE)
        resumed_sms = list(gw.sent)
        trips = [c[0] for c in sim.meters[f"{1:012d}"].commands]

        gw.sent.clear()
        clean_config = calendar(tmp_path / "clean", SCHEDULE, _config(gw, clean_sim))
        clean = worker({**clean_env, "DIANFEI_CONFIG": clean_config}, _at(DAY).isoformat())
        assert clean.returncode == 0, clean.stderr
        other = open_database(load_settings(clean_env))
        try:
            assert rows(other, STATE) == resumed
        finally:
            other.engine.dispose()
        # every SMS of the day went out once, as in the uninterrupted day
        assert _sms(resumed_sms) == _sms(gw.sent) and max(_sms(gw.sent).values()) == 1
        assert [c[0] for c in clean_sim.meters[f"{1:012d}"].commands] == ["trip"]
        # a trip the crash left unrecorded is sent again (the meter is already tripped)
        assert trips == (["trip", "trip"] if point == "collections.command_sent" else ["trip"])
        assert sim.meters[f"{1:012d}"].relay == "tripped"

    # the day did what it should, once: A tripped, B's stop notice, C's reminder, the month's fees
    assert [(c[1], c[3], c[4]) for c in resumed["commands"]] == [("A", "trip", "done")]
    assert [(e[1], e[2]) for e in resumed["events"] if e[2] == "suspended"] == [("A", "suspended")]
    fees = [e for e in resumed["ledger"] if e[1] == "late_fee" and str(e[3]).endswith(str(DAY))]
    assert sorted(e[0] for e in fees) == ["A", "B", "C"]
    assert {(o[0], o[4]) for o in resumed["outbox"]} >= {
        (o[0], "sent") for o in resumed["outbox"] if o[0].startswith("col:dun:B:stop_notice")}
    intact(db_env)
