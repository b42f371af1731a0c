"""Smart prepayment (智能交费), moved day by day: a prepaid account runs down, is warned, receives
the cut-off notice, is tripped after the wait, tops up and is closed again — exact events."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import polars as pl
import pytest
from sqlalchemy import text

from dianfei.collections.rules import policy, with_settings
from dianfei.collections.service import Context, DayReport, events_json, run_day, tasks_json
from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.metering.service import store_reads
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.collections.test_collections_e2e import at, pay
from tests.factories import Person, load_people

MARCH_1 = date(2026, 3, 1)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=BUSINESS_TZ).astimezone(UTC)


def prepaid(db: Database, ids: list[str], protected: frozenset[str] = frozenset()) -> None:
    load_people(db, [Person(cid) for cid in ids])
    with db.engine.begin() as conn:
        for cid in ids:
            conn.execute(text("UPDATE customers SET payment_mode = 'prepaid', protected = :p "
                              "WHERE customer_id = :c"), {"p": cid in protected, "c": cid})
            conn.execute(text("UPDATE meters SET comm_address = :a WHERE account_id = :c"),
                         {"a": f"00000{len(cid)}{abs(hash(cid)) % 10**6:06d}", "c": cid})


def daily_reads(db: Database, meter: str, kwh_by_day: dict[date, int]) -> None:
    """Daily frozen reads of the total register at 00:00 (cumulative kWh on that day)."""
    frame = pl.DataFrame({"meter_id": meter, "read_at": [midnight(d) for d in kwh_by_day],
                          "register": "total", "value": [k * 100 for k in kwh_by_day.values()],
                          "source": "ami"},
                         schema={"meter_id": pl.String, "read_at": pl.Datetime("us", "UTC"),
                                 "register": pl.String, "value": pl.Int64, "source": pl.String})
    with db.engine.begin() as conn:
        store_reads(conn, frame)


def run(db: Database, first: date, last: date, switch: FakeSwitch, notifier: FakeNotifier) -> None:
    day = first
    while day <= last:
        run_day(db, day, clock=FixedClock(at(day, 9)), switch=switch, notifier=notifier)
        day += timedelta(days=1)


def usage_until_trip() -> dict[date, int]:
    # 1,000 kWh on the meter on 1 March, 20 kWh a day until the trip on 12 March (09:00), nothing
    # while it is open, 10 kWh by the first midnight after the close on 14 March, then 20 a day
    reads = {MARCH_1 + timedelta(days=i): 1000 + 20 * i for i in range(12)}  # through 12 March
    reads |= {date(2026, 3, 13): 1220, date(2026, 3, 14): 1220, date(2026, 3, 15): 1230,
              date(2026, 3, 16): 1250}
    return reads


def state(db: Database, account: str) -> tuple[str, int, int]:
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT stage, available, accrued FROM prepay_state "
                                "WHERE account_id = :a"), {"a": account}).one()
    return str(row[0]), int(row[1]), int(row[2])


def stage_since(db: Database, account: str) -> datetime:
    """When the account's current stage began (``prepay_state.since_at``)."""
    from dianfei.collections.models import PrepayState

    with db.session() as s:
        got = s.get(PrepayState, account)
        assert got is not None
        return got.since_at


def test_prepaid_account_warned_cut_topped_up_and_reconnected(db: Database) -> None:
    # given a prepaid residential customer P (tiered tariff, remote meter) who topped up 100 yuan
    prepaid(db, ["P"])
    daily_reads(db, "MP", usage_until_trip())
    pay(db, "P", 10_000, at(date(2026, 2, 28), 15), "T-P-1")
    switch, notifier = FakeSwitch(), FakeNotifier()
    # when collections runs every day at 09:00 through 13 March, P tops up 50 yuan that afternoon,
    # and the runs go on through 16 March
    run(db, MARCH_1, date(2026, 3, 10), switch, notifier)
    # 180 kWh at tier 1 (0.5380) = 96.84 → 3.16 yuan left, warned once (on 6 March at 46.20)
    assert state(db, "P") == ("warned", 316, 9684)
    # warned since the crossing, not since the last run (each day's run set it to its own time)
    assert stage_since(db, "P") == at(date(2026, 3, 6), 9)
    run(db, date(2026, 3, 11), date(2026, 3, 13), switch, notifier)
    assert switch.calls == [("trip", "MP")]
    pay(db, "P", 5_000, at(date(2026, 3, 13), 15), "T-P-2")
    run(db, date(2026, 3, 14), date(2026, 3, 16), switch, notifier)
    # then the exact life cycle, each notice once per crossing
    evs = events_json(db, "P")
    assert [(e["type"], e.get("notice") or e.get("amount") or e.get("reason"), e["at"]) for e in evs] == [
        ("payment_received", "100.00", "2026-02-28T15:00:00+08:00"),
        ("notice_sent", "prepay_warning", "2026-03-06T09:00:00+08:00"),
        ("notice_sent", "cutoff_notice", "2026-03-11T09:00:00+08:00"),
        ("suspension_ordered", "prepay", "2026-03-12T09:00:00+08:00"),
        ("suspended", "prepay", "2026-03-12T09:00:00+08:00"),
        ("payment_received", "50.00", "2026-03-13T15:00:00+08:00"),
        ("reconnection_ordered", "prepay", "2026-03-14T09:00:00+08:00"),
        ("reconnected", "prepay", "2026-03-14T09:00:00+08:00"),
        ("notice_sent", "reconnected", "2026-03-14T09:00:00+08:00"),
    ]
    assert all(e.get("reason") == "prepay" for e in evs
               if e["type"] in ("suspension_ordered", "suspended", "reconnection_ordered", "reconnected"))
    assert switch.calls == [("trip", "MP"), ("close", "MP")]
    # 250 kWh = 134.50 yuan of 150 yuan topped up: 15.50 left, still below the threshold but
    # no second warning (the crossing from above was before the cut-off)
    assert state(db, "P") == ("warned", 1550, 13_450)
    assert stage_since(db, "P") == at(date(2026, 3, 14), 9)
    # the cut-off notice named the day after the wait; the ledger holds only the two top-ups
    with db.engine.connect() as conn:
        ctx = conn.execute(text("SELECT context FROM notify_outbox WHERE notice = 'cutoff_notice'")
                           ).scalar_one()
        kinds = [r[0] for r in conn.execute(text("SELECT kind FROM ledger_entries ORDER BY entry_id"))]
    assert '"stop_on": "2026-03-12"' in ctx and '"balance": "-7.60"' in ctx
    assert kinds == ["payment", "payment"]
    assert ledger.balance(db.engine.connect(), "P") == -15_000


def test_top_up_before_the_trip_cancels_the_cut_off(db: Database) -> None:
    # given P received the cut-off notice on Wednesday 11 March
    prepaid(db, ["P"])
    daily_reads(db, "MP", usage_until_trip())
    pay(db, "P", 10_000, at(date(2026, 2, 28), 15), "T-P-1")
    switch, notifier = FakeSwitch(), FakeNotifier()
    run(db, MARCH_1, date(2026, 3, 11), switch, notifier)
    # when P tops up 30 yuan before the next morning's run
    pay(db, "P", 3_000, at(date(2026, 3, 11), 20), "T-P-2")
    run(db, date(2026, 3, 12), date(2026, 3, 13), switch, notifier)
    # then the meter is never tripped: 130 − 118.36 (220 kWh) = 11.64 yuan left
    assert switch.calls == []
    types = [e["type"] for e in events_json(db, "P")]
    assert "suspension_ordered" not in types and "suspended" not in types
    assert state(db, "P")[0] == "warned"
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT status, closed_reason FROM stop_cases")).one() == (
            "closed", "topped_up")


def test_protected_prepaid_customer_is_never_cut(db: Database) -> None:
    prepaid(db, ["Q"], protected=frozenset({"Q"}))
    daily_reads(db, "MQ", usage_until_trip())
    pay(db, "Q", 10_000, at(date(2026, 2, 28), 15), "T-Q-1")
    switch, notifier = FakeSwitch(), FakeNotifier()
    run(db, MARCH_1, date(2026, 3, 13), switch, notifier)
    evs = events_json(db, "Q")
    assert switch.calls == []
    assert [e.get("notice") for e in evs if e["type"] == "notice_sent"] == [
        "prepay_warning", "prepay_warning"]  # below 50 yuan, then at zero: no cut-off notice
    assert not [e for e in evs if e["type"].startswith("suspension") or e["type"] == "suspended"]
    assert [t["kind"] for t in tasks_json(db)] == ["collector_visit"]


def test_cut_off_waits_for_the_stop_window(db: Database) -> None:
    # given the balance runs out on Friday 13 March (a 2-day later start), the trip would be due
    # on Saturday 14 March: it waits for Monday 16 March 09:00
    prepaid(db, ["P"])
    reads = {MARCH_1 + timedelta(days=i): 1000 + 20 * i for i in range(16)}
    daily_reads(db, "MP", reads)
    pay(db, "P", 12_000, at(date(2026, 2, 28), 15), "T-P-1")
    switch, notifier = FakeSwitch(), FakeNotifier()
    run(db, MARCH_1, date(2026, 3, 16), switch, notifier)
    evs = {e["type"]: e["at"] for e in events_json(db, "P")}
    assert evs["suspended"] == "2026-03-16T09:00:00+08:00"


def test_annual_tier_position_from_bills_of_the_year(db: Database) -> None:
    """Period-to-date kWh are priced at the year-to-date tier position, like the next bill."""
    from dianfei.collections.prepay import available_balances

    prepaid(db, ["P"])
    # given 2,700 kWh billed in January and February (tier 1 ends at 2,760 kWh a year), the
    # February bill closing at the 1 March frozen read, and 100 kWh used since
    with db.engine.begin() as conn:
        for period, kwh, to in (("2026-01", 1400, date(2026, 2, 1)), ("2026-02", 1300, MARCH_1)):
            conn.execute(text(
                "INSERT INTO bills (bill_id, account_id, customer_id, period, version, issued_on, "
                "due_on, amount, kwh, tariff_id, tariff_version, estimated, meter_id, multiplier, "
                "read_to_at, read_to, status) VALUES (:b, 'P', 'P', :p, 1, :i, :d, 0, :k, "
                "'cn-zj-residential', '2012-07-01', :f, 'MP', 1, :t, 0, 'issued')"),
                {"b": f"P-{period.replace('-', '')}-1", "p": period, "i": to, "d": to, "k": kwh * 100,
                 "f": False, "t": midnight(to).replace(tzinfo=None)})
    daily_reads(db, "MP", {MARCH_1: 5000, date(2026, 3, 5): 5100})
    clock = FixedClock(at(date(2026, 3, 5), 9))
    ctx = Context(db, date(2026, 3, 5), clock, with_settings(policy(), {}), [], FakeNotifier(),
                  None, DayReport(date(2026, 3, 5)))
    out = available_balances(ctx)
    # then 60 kWh at 0.5380 + 40 kWh at 0.5880 = 32.28 + 23.52 = 55.80 yuan accrued
    assert out.select("account_id", "kwh", "accrued", "available").rows() == [("P", 10_000, 5580, -5580)]


def test_prepay_settings_override_the_calendar() -> None:
    p = with_settings(policy(), {"collections": {"prepay": {"warning_threshold": "20.00",
                                                            "cutoff_wait_hours": 2}}})
    assert p.prepay_warning_fen == 2000 and p.prepay_cutoff_wait == timedelta(hours=2)
    assert policy().prepay_warning_fen == 5000
    import pytest

    from dianfei.core.errors import ValidationError

    with pytest.raises(ValidationError, match=r"\[collections.prepay\] cutoff_wait_hours"):
        with_settings(policy(), {"collections": {"prepay": {"cutoff_wait_hours": "soon"}}})


def test_a_read_no_meter_could_register_never_cuts_anyone_off(db: Database) -> None:
    """Found in review: a huge reading published for a prepaid meter (a forged MQTT message)
    led to a cut-off notice and a remote trip. A direct meter cannot register more than
    ``max_kw_per_multiplier`` (70 kW) an hour: 999,999 kWh in a day is not believed."""
    prepaid(db, ["P", "Q"])
    daily_reads(db, "MP", {MARCH_1: 1000, date(2026, 3, 2): 999_999})
    daily_reads(db, "MQ", {MARCH_1: 1000, date(2026, 3, 2): 1000 + 70 * 24})  # at the limit
    pay(db, "P", 10_000, at(date(2026, 2, 28), 15), "T-P-1")
    pay(db, "Q", 10_000, at(date(2026, 2, 28), 15), "T-Q-1")
    switch, notifier = FakeSwitch(), FakeNotifier()
    reports = []
    for day in (MARCH_1, date(2026, 3, 2)):
        reports.append(run_day(db, day, clock=FixedClock(at(day, 9)), switch=switch,
                               notifier=notifier))
    assert reports[-1].prepay_implausible == ["P"]
    # P is not evaluated on the impossible read; Q (a possible, if large, day) is
    assert [e["type"] for e in events_json(db, "P")] == ["payment_received"]
    assert any(e.get("notice") == "cutoff_notice" for e in events_json(db, "Q"))
    assert switch.calls == []


def test_a_late_fee_posted_at_month_end_is_in_that_days_prepaid_balance(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The day reads the prepaid accounts' accrued charges from its start (on the second core)
    but their balances only after its late fees: a fee posted that morning is already owed."""
    from dianfei.db import background

    # each read runs where the day submits it (as on an in-memory database), not whenever the
    # second core gets to it: what it sees follows the day's order, not the machine's timing
    monkeypatch.setattr(background.Background, "__init__",
                        lambda self, engine, name: setattr(self, "_pool", None))
    prepaid(db, ["P"])
    # given a prepaid account (converted, say) still owing a bill of 100.00 due on 10 March,
    # and using 20 kWh a day
    daily_reads(db, "MP", {MARCH_1 + timedelta(days=i): 1000 + 20 * i for i in range(31)})
    with db.session() as s:
        ledger.post_entry(s, clock=FixedClock(at(date(2026, 2, 20))), account_id="P",
                          customer_id="P", kind="bill", amount=10_000, reference="P-202602-1",
                          due_on=date(2026, 3, 10))
    # when the days up to the month's end run (the fee accrued since 11 March is posted then)
    run(db, date(2026, 3, 30), date(2026, 3, 31), FakeSwitch(), FakeNotifier())
    with db.engine.connect() as conn:
        fee = conn.execute(text("SELECT coalesce(sum(amount), 0) FROM ledger_entries "
                                "WHERE account_id = 'P' AND kind = 'late_fee'")).scalar_one()
        available, accrued, as_of = conn.execute(text(
            "SELECT available, accrued, as_of FROM prepay_state WHERE account_id = 'P'")).one()
    # then 31 March's prepaid state holds the bill, the fee posted that morning and the charges
    assert fee > 0 and accrued > 0 and str(as_of)[:10] == "2026-03-31"
    assert available == -(10_000 + fee) - accrued
