"""The daily run's late-payment history (``Context.late_history``): the risk features of the
accounts a step works on, read through the account index once per run — not the whole book's
year of accruals every day."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import insert

from dianfei.collections.context import Context, DayReport
from dianfei.collections.ladder import ladders
from dianfei.collections.models import LateFeeAccrual
from dianfei.collections.rules import policy, with_settings
from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.db.engine import Database
from tests.collections.fakes import FakeNotifier

DAY = date(2026, 5, 8)


def _accrual(bill: str, account: str, due: date, through: date) -> dict[str, object]:
    return {"bill_id": bill, "account_id": account, "customer_id": account,
            "customer_class": "residential", "due_on": due, "through": through, "raw": 0,
            "posted": 0, "accrued": 0, "waived": False, "closed_on": through}


@pytest.fixture
def ctx(db: Database) -> Context:
    with db.engine.begin() as conn:
        conn.execute(insert(LateFeeAccrual), [
            _accrual("A-1", "A", date(2026, 3, 18), date(2026, 3, 28)),   # 10 days, recent
            _accrual("A-2", "A", date(2025, 12, 18), date(2025, 12, 22)),  # 4 days, not recent
            _accrual("A-3", "A", date(2025, 3, 18), date(2025, 4, 18)),   # over a year ago
            _accrual("B-1", "B", date(2026, 4, 18), date(2026, 5, 7)),    # still accruing
            _accrual("B-2", "B", date(2026, 5, 8), date(2026, 5, 8)),     # due today: not late yet
            _accrual("C-1", "C", date(2026, 4, 18), date(2026, 4, 20)),
        ])
    clock = FixedClock(datetime(2026, 5, 8, 9, 0, tzinfo=BUSINESS_TZ))
    return Context(db, DAY, clock, with_settings(policy(), {}), ladders(), FakeNotifier(), None,
                   DayReport(DAY))


def test_the_history_of_the_accounts_asked_for_only(ctx: Context) -> None:
    got = {r["account_id"]: r for r in ctx.late_history(["A", "B", "D"]).iter_rows(named=True)}
    # C was not asked for; D has no late bill (no row, as an account without history)
    assert set(got) == {"A", "B"}
    assert (got["A"]["late_count"], got["A"]["avg_days_late"], got["A"]["late_recent"]) == (2, 7.0, 1)
    assert (got["B"]["late_count"], got["B"]["avg_days_late"], got["B"]["late_recent"]) == (1, 19.0, 1)


def test_each_account_is_read_once_per_run(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    # counted at the repository read (on SQLite it reads through the driver's own cursor, which
    # SQLAlchemy's statement events do not see)
    from dianfei.collections import repository

    reads: list[list[str]] = []
    real = repository.late_history_of

    def counted(engine: object, accounts: list[str], *args: object) -> object:
        reads.append(sorted(accounts))
        return real(engine, accounts, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(repository, "late_history_of", counted)
    first = ctx.late_history(["A", "B"])
    again = ctx.late_history(["B", "A"])
    assert reads == [["A", "B"]]
    assert again.sort("account_id").equals(first.sort("account_id"))
    # the worklists ask for an account the snapshot did not: only that one is read
    more = ctx.late_history(["B", "C"])
    assert reads == [["A", "B"], ["C"]]
    assert sorted(more["account_id"].to_list()) == ["B", "C"]


def test_nothing_asked_nothing_read(ctx: Context) -> None:
    got = ctx.late_history([])
    assert got.height == 0
    assert got.columns == ["account_id", "late_count", "avg_days_late", "late_recent"]


def test_the_late_counts_that_can_move_are_found_from_the_days_rows(db: Database) -> None:
    """The rating of 2026-05-08 carries forward yesterday's late counts (bills due in
    [window start, yesterday)) except where an accrual opened since yesterday's pass or an edge
    of the window passed a due date."""
    from dianfei.collections.ops_repository import late_count_moved

    def acc(bill: str, account: str, due: date, opened: date | None) -> dict[str, object]:
        return {**_accrual(bill, account, due, due), "opened_on": opened}

    passed, day = date(2026, 5, 7), date(2026, 5, 8)
    with db.engine.begin() as conn:
        conn.execute(insert(LateFeeAccrual), [
            acc("Q-1", "QUIET", date(2026, 1, 18), date(2026, 1, 19)),     # nothing moved
            acc("N-1", "NEW", date(2026, 5, 5), day),                      # opened by today's run
            acc("Y-1", "YESTERDAY", date(2026, 5, 5), passed),             # after yesterday's rating
            acc("R-1", "REISSUED", date(2025, 12, 18), passed),            # an old bill re-issued
            acc("L-1", "LEAVING", date(2025, 5, 7), date(2025, 5, 8)),     # the window's start passed it
            acc("E-1", "ENTERING", date(2026, 5, 6), date(2026, 5, 7)),    # now before yesterday
            acc("O-1", "OUTSIDE", date(2024, 1, 18), None),                # no opened_on, out of window
            acc("U-1", "UNKNOWN", date(2026, 2, 18), None),                # no opened_on: counts as new
        ])
    got = late_count_moved(db.engine, passed, (date(2025, 5, 7), date(2026, 5, 6)),
                           (date(2025, 5, 8), date(2026, 5, 7)))
    assert got == {"NEW", "YESTERDAY", "REISSUED", "LEAVING", "ENTERING", "UNKNOWN"}
    # the same day rated again: only what opened since its own pass
    assert late_count_moved(db.engine, day, (date(2025, 5, 8), date(2026, 5, 7)),
                            (date(2025, 5, 8), date(2026, 5, 7))) == {"NEW", "UNKNOWN"}
