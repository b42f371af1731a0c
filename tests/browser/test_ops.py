"""The operational pages in a real browser: a billing clerk starts a bill run and watches it
finish (the progress panel polls with htmx while a worker does the run), and a cashier takes a
payment at the counter and closes the till."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime
from typing import Any

from typer.testing import CliRunner

from dianfei.cli.jobs import KINDS
from dianfei.cli.main import app as cli
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database
from dianfei.jobs.service import claim, run_claimed
from dianfei.ledger import service as ledger
from tests.browser.conftest import LiveServer, shot, sign_in
from tests.factories import Person, Reads, load_people, month_end

PASSWORD = "correct horse battery"
JAN = Period(2026, 1)
CLOCK = FixedClock(datetime(2026, 2, 3, 9, 0, tzinfo=BUSINESS_TZ))


def add_user(name: str, role: str) -> None:
    res = CliRunner().invoke(cli, ["users", "add", name, "--role", role, "--password-stdin"],
                             input=PASSWORD + "\n")
    assert res.exit_code == 0, res.output


class Worker:
    """The jobs worker in a thread of the test: claims and runs what is queued (what
    ``dianfei worker`` does), until stopped."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.stop = threading.Event()
        self.ran: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(0.2):
            run = claim(self.db, clock=CLOCK, worker="browser-test")
            if run is not None:
                self.ran.append(run_claimed(self.db, run, KINDS, clock=CLOCK,
                                            worker="browser-test"))

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        """Until ``count`` runs finished: what a run queues as it ends is claimed on the next
        polls, after the page already showed the run finished."""
        deadline = time.monotonic() + timeout
        while len(self.ran) < count:
            assert time.monotonic() < deadline, f"{len(self.ran)} of {count} runs finished"
            time.sleep(0.05)

    def __enter__(self) -> Worker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_a_clerk_runs_a_bill_run_and_sees_it_finish(db: Database, page: Any) -> None:
    load_people(db, [Person(f"C{i:02d}") for i in range(12)])
    reads = Reads()
    for i in range(10):  # two accounts without reads end on the exceptions list
        reads.add(f"C{i:02d}", month_end(Period(2025, 12)), 1000_00)
        reads.add(f"C{i:02d}", month_end(JAN), 1000_00 + 100_00 + i * 10_00)
    reads.store(db)
    add_user("clerk", "billing_clerk")
    with LiveServer(db, CLOCK) as server:
        sign_in(page, server.url, "clerk", PASSWORD)
        page.goto(f"{server.url}/billing")
        assert page.locator("h1").inner_text() == "电费核算"
        assert page.input_value("input[name=period]") == "2026-01"
        page.click("#start-run button[type=submit]")
        page.wait_for_url("**/billing?job=*")
        assert page.inner_text("#job-status") == "排队中"
        shot(page, "queued")
        # a second start while the first waits is refused in words
        page.click("#start-run button[type=submit]")
        assert "a bill run is already queued" in page.inner_text("#refusal")
        page.goto(f"{server.url}/billing")  # the page follows the queued run by itself
        with Worker(db) as worker:
            # htmx asks every 2 s; the panel says so once the worker finished the run
            page.wait_for_selector("#finished", timeout=60_000)
            worker.wait_for(4)
        # the bill run, then what it queued as it ended: the dashboard's figures, the forecasts,
        # the segments' whole-book facts
        assert [(r["job"], r["status"]) for r in worker.ran] == [
            ("bill-run", "done"), ("dashboard", "done"), ("forecasts", "done"),
            ("segment-facts", "done")]
        panel = page.inner_text("#progress")
        assert "已处理 12 / 12 户" in panel and "异常 2" in panel
        assert page.get_attribute("#progress", "hx-trigger") is None
        # the periods table under the panel is fetched again once the run finished
        page.wait_for_selector("#table-bill-runs td:has-text('2026-01-001')")
        shot(page, "finished")
        page.click("#table-bill-runs a[href='/exceptions/2026-01']")
        page.wait_for_url("**/exceptions/2026-01")
        assert "共 2 条" in page.inner_text(".pager")


def test_a_cashier_takes_a_payment_and_closes_the_till(db: Database, page: Any) -> None:
    load_people(db, [Person("C01")])
    with db.session() as s:
        ledger.post_entry(s, clock=CLOCK, account_id="C01", customer_id="C01", kind="bill",
                          amount=12345, reference="C01-202601-1", due_on=date(2026, 2, 18))
    add_user("wangfang", "cashier")
    with LiveServer(db, CLOCK) as server:
        sign_in(page, server.url, "wangfang", PASSWORD)
        page.goto(f"{server.url}/counter")
        page.fill("#open-shift input[name=float]", "200.00")
        page.click("#open-shift button[type=submit]")
        page.wait_for_selector("#take-payment")
        # a mistake first: the amount is refused next to its field, nothing is taken
        page.fill("#take-payment input[name=account]", "C01")
        page.fill("#take-payment input[name=amount]", "12.345")
        page.click("#take-payment button[type=submit]")
        assert "at most 2 decimal places" in page.inner_text("#amount-error")
        assert page.input_value("#take-payment input[name=account]") == "C01"
        shot(page, "wrong-amount")
        page.fill("#take-payment input[name=amount]", "123.45")
        page.fill("#take-payment input[name=tendered]", "150")
        page.click("#take-payment button[type=submit]")
        page.wait_for_selector("#receipt")
        receipt = page.inner_text("#receipt")
        assert "C01 · ¥123.45" in receipt and "找零 ¥26.55" in receipt
        assert "缴费后欠费 ¥0.00" in receipt
        assert page.locator("#table-counter-receipts tbody tr").count() == 1
        shot(page, "receipt")
        page.fill("#close-till input[name=counted]", "323.45")
        page.click("#close-till button[type=submit]")
        page.wait_for_selector("#till-closed")
        assert page.inner_text("#difference") == "0.00"
        assert page.inner_text("#hand-over") == "123.45"
        assert page.locator("#open-shift").count() == 1  # the next shift can be opened
        shot(page, "till-closed")


def test_a_supervisor_works_the_worklists(db: Database, page: Any) -> None:
    from datetime import UTC

    from dianfei.metering.vee.models import VeeEstimate, VeeFinding
    from tests.web.test_ops_pages import reconciled

    load_people(db, [Person("C00"), Person("C01")])
    at = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    with db.session() as s:
        s.add_all([VeeFinding(rule="spike", meter_id="MC00", ts=at, ref="", value_wh=9000,
                              detail="far above the median", run_id="V1"),
                   VeeEstimate(meter_id="MC01", ts=at, minutes=15, wh=100, method="linear",
                               inputs="{}", run_id="V1")])
    reconciled(db)
    add_user("sup", "supervisor")
    with LiveServer(db, CLOCK) as server:
        sign_in(page, server.url, "sup", PASSWORD)
        page.goto(f"{server.url}/vee")
        assert "共 2 条" in page.inner_text(".pager")
        page.select_option("select[name=reason]", "spike")
        page.click("form.filters button[type=submit]")
        page.wait_for_url("**reason=spike**")
        assert "共 1 条" in page.inner_text(".pager")
        shot(page, "vee")
        page.goto(f"{server.url}/reconcile")
        shot(page, "reconcile-runs")
        page.click("#table-reconcile-runs td[data-label='未澄清'] a")
        page.wait_for_url("**/reconcile/breaks?channel=alipay&day=2026-02-02")
        assert "共 2 条" in page.inner_text(".pager")
        shot(page, "breaks")
        page.locator("#table-reconcile-breaks a", has_text="澄清").first.click()
        page.wait_for_url("**/reconcile/breaks/*")
        page.click("form[action$='/resolve'] button")  # no note yet: refused next to the field
        assert page.inner_text("#note-error")
        page.fill("textarea[name=note]", "支付宝确认：该笔已退款")
        page.click("form[action$='/resolve'] button")
        page.wait_for_url("**/reconcile/breaks?resolved=*")
        assert "共 1 条" in page.inner_text(".pager")
        shot(page, "resolved")


def test_a_clerk_releases_a_held_read(db: Database, page: Any) -> None:
    """Issue 17: a reading held as implausible, released from the console with a reason."""
    from tests.web.test_held_read_pages import HUGE_AT, hold

    load_people(db, [Person("C00")])
    hold(db, "MC00", HUGE_AT)
    add_user("clerk", "billing_clerk")
    with LiveServer(db, CLOCK) as server:
        sign_in(page, server.url, "clerk", PASSWORD)
        page.goto(f"{server.url}/vee/held")
        assert "共 1 条" in page.inner_text(".pager")
        shot(page, "held-reads")
        page.locator("#table-held-reads a", has_text="复核").first.click()
        page.wait_for_url("**/vee/held/review?*")
        page.check("input[name=decision][value=release]")
        page.click("form[action='/vee/held/review'] button")  # no reason yet: refused
        assert page.inner_text("#reason-error")
        page.check("input[name=decision][value=release]")
        page.fill("textarea[name=reason]", "现场校验：电能表计量正常")
        page.click("form[action='/vee/held/review'] button")
        page.wait_for_url("**/vee/held?done=MC00*")
        assert "表 MC00 的读数已放行" in page.inner_text("main")
        assert "共 0 条" in page.inner_text(".pager")
        shot(page, "held-read-released")
