"""Measure enqueue_many and dispatch per notice (not a test; run by hand):

    .venv/bin/python -m tests.notify.measure_dispatch [N]            # SQLite
    DIANFEI_TEST_DB=postgresql .venv/bin/python -m tests.notify.measure_dispatch [N]

N customers with phones, one SMS reminder each, a sender that records to memory. Prints one JSON line.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from dianfei.core.clock import FixedClock
from dianfei.core.settings import load_settings
from dianfei.db.engine import open_database
from dianfei.notify import service
from dianfei.notify.channels import Message, Senders, SendResult
from tests.conftest import backend, fresh_database_env
from tests.factories import Person, load_people
from tests.notify._util import CIPHER, REMINDER, local, settings


class MemorySms:
    channel = "sms"
    idempotent = False

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, message: Message) -> SendResult:
        self.sent.append(message)
        return SendResult(provider_ref=f"biz-{message.outbox_id}")


def main(n: int) -> dict[str, object]:
    os.environ["DIANFEI_SECRET_KEY"] = base64.urlsafe_b64encode(b"k" * 32).decode()
    with tempfile.TemporaryDirectory() as tmp, fresh_database_env(Path(tmp)) as env:
        db = open_database(load_settings(env))
        ids = [f"C{i:06d}" for i in range(n)]
        load_people(db, [Person(c) for c in ids])
        clock = FixedClock(local("2026-11-02 10:00"))
        notices = [service.Notice(key=f"dun:{c}:2026-10:L1:sms", account_id=c, customer_id=c,
                                  notice="reminder", channel="sms", context={**REMINDER, "account_id": c})
                   for c in ids]
        t0 = time.perf_counter()
        with db.session() as s:
            service.enqueue_many(s, notices, clock=clock)
        t1 = time.perf_counter()
        sms = MemorySms()
        report = service.dispatch(db, clock=clock, senders=Senders(sms=sms), cipher=CIPHER,
                                  settings=settings(per_customer_daily={"sms": 3}))
        t2 = time.perf_counter()
        db.engine.dispose()
    assert report.sent == n == len(sms.sent), report
    return {"backend": backend(), "notices": n, "enqueue_many_s": round(t1 - t0, 3),
            "enqueue_us_per_notice": round((t1 - t0) / n * 1e6, 1), "dispatch_s": round(t2 - t1, 3),
            "dispatch_ms_per_notice": round((t2 - t1) / n * 1e3, 3)}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)))
