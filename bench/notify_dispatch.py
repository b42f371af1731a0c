"""Notices at collections scale: enqueue N SMS reminders, dispatch them through the fake Alibaba
Cloud SMS gateway answering in ``--delay-ms`` on a real HTTP server on 127.0.0.1, check each was
recorded once.

    python -m bench.notify_dispatch --notices 180000 --delay-ms 50 [--backend sqlite|postgresql]
                                    [--concurrency 200] [--sender gateway|memory] [--profile F]

The gateway (tests/fakes/sms_gateway.py: signature, timestamp and nonce checked as the service
does) runs in its own process, as a real gateway is not in ours. ``--sender memory`` replaces it
by an adapter that records to memory: what dispatch costs without the network (this was
tests/notify/measure_dispatch.py). Prints one JSON line; fails if any notice is not recorded
exactly once (sent in the outbox, one attempt, accepted once by the gateway with that BizId).
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.billrun import _database, _drop


def serve_gateway(delay_ms: float) -> None:
    """The gateway process: print the endpoint, serve until stdin closes, print what it took."""
    from tests.fakes.sms_gateway import FakeSmsGateway

    with FakeSmsGateway(delay=delay_ms / 1000) as gw:
        print(gw.endpoint, flush=True)
        sys.stdin.read()
        out_ids = Counter(m["out_id"] for m in gw.sent)
        biz = {m["out_id"]: m["biz_id"] for m in gw.sent}
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"requests": gw.requests, "accepted": len(gw.sent),
                      "duplicates": sum(n - 1 for n in out_ids.values() if n > 1),
                      "cpu_s": round(ru.ru_utime + ru.ru_stime, 1), "biz": biz}), flush=True)


class MemorySms:
    channel = "sms"
    idempotent = False

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, message: Any) -> Any:
        from dianfei.notify.channels import SendResult

        self.sent.append(message)
        return SendResult(provider_ref=f"biz-{message.outbox_id}")


def run(notices: int, delay_ms: float, backend: str, concurrency: int, sender: str,
        profile: str | None) -> dict[str, Any]:
    from sqlalchemy import text
    from tests.factories import Person, load_people
    from tests.fakes.sms_gateway import ACCESS_KEY_ID, ACCESS_KEY_SECRET, SIGN_NAME
    from tests.notify._util import CIPHER, REMINDER, SMS_TEMPLATES, local, settings

    from dianfei.core.clock import FixedClock
    from dianfei.core.settings import load_settings
    from dianfei.db.engine import open_database
    from dianfei.notify import service
    from dianfei.notify.channels import Senders
    from dianfei.notify.sms import AliyunSmsSender, AliyunSmsSettings

    os.environ["DIANFEI_SECRET_KEY"] = base64.urlsafe_b64encode(b"k" * 32).decode()
    tmp = Path(tempfile.mkdtemp(prefix="dianfei-bench-"))
    url, pg_name = _database(backend, tmp)
    out: dict[str, Any] = {"notices": notices, "backend": backend, "sender": sender,
                           "delay_ms": delay_ms if sender == "gateway" else 0,
                           "dispatch_concurrency": concurrency}
    gateway = None
    try:
        db = open_database(load_settings({"DIANFEI_DATABASE_URL": url, "DIANFEI_DATA_DIR": str(tmp)}))
        ids = [f"C{i:07d}" for i in range(notices)]
        load_people(db, [Person(c) for c in ids])
        clock = FixedClock(local("2026-11-02 10:00"))
        batch = [service.Notice(key=f"dun:{c}:2026-10:L1:sms", account_id=c, customer_id=c,
                                notice="reminder", channel="sms", context={**REMINDER, "account_id": c})
                 for c in ids]
        t0 = time.perf_counter()
        with db.session() as s:
            service.enqueue_many(s, batch, clock=clock)
        out["enqueue_s"] = round(time.perf_counter() - t0, 2)
        if sender == "gateway":
            gateway = subprocess.Popen([sys.executable, "-m", "bench.notify_dispatch", "--serve-gateway",
                                        "--delay-ms", str(delay_ms)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
            assert gateway.stdout is not None
            endpoint = gateway.stdout.readline().strip()
            sms: Any = AliyunSmsSender(AliyunSmsSettings(
                access_key_id=ACCESS_KEY_ID, access_key_secret=ACCESS_KEY_SECRET, sign_name=SIGN_NAME,
                endpoint=endpoint, timeout=30, templates=SMS_TEMPLATES))
        else:
            sms = MemorySms()
        ns = settings(dispatch_concurrency=concurrency, per_customer_daily={"sms": 3})
        prof = cProfile.Profile() if profile else None
        c0, t0 = time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        report = service.dispatch(db, clock=clock, senders=Senders(sms=sms), cipher=CIPHER, settings=ns)
        if prof:
            prof.disable()
            prof.dump_stats(profile)  # type: ignore[arg-type]
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        out |= {"dispatch_s": round(elapsed, 2), "notices_per_s": round(notices / elapsed),
                "dispatch_ms_per_notice": round(elapsed / notices * 1e3, 3),
                "dispatcher_cpu_s": round(cpu, 1), "report": {k: v for k, v in report.as_dict().items() if v}}
        # each notice recorded exactly once
        with db.engine.connect() as conn:
            status = dict(conn.execute(text(
                "SELECT status, COUNT(*) FROM notify_outbox GROUP BY status")).all())
            attempts = conn.execute(text("SELECT COUNT(*), COUNT(DISTINCT outbox_id) FROM notify_attempts "
                                         "WHERE outcome = 'sent'")).one()
            refs = dict(conn.execute(text("SELECT key, provider_ref FROM notify_outbox")).all())
        out["outbox"] = status
        ok = status == {"sent": notices} and tuple(attempts) == (notices, notices) and report.sent == notices
        if gateway is not None:
            assert gateway.stdin is not None and gateway.stdout is not None
            gateway.stdin.close()
            seen = json.loads(gateway.stdout.readline())
            gateway.wait()
            gateway = None
            biz = seen.pop("biz")
            out["gateway"] = seen
            ok = ok and seen["accepted"] == notices and seen["duplicates"] == 0 and biz == refs
        else:
            ok = ok and len(sms.sent) == notices
        out["each_recorded_once"] = ok
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        db.engine.dispose()
        if not ok:
            raise SystemExit(f"notices not recorded exactly once: {json.dumps(out)}")
    finally:
        if gateway is not None:
            gateway.kill()
        _drop(pg_name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--notices", type=int, default=180_000)
    ap.add_argument("--delay-ms", type=float, default=50)
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--concurrency", type=int, default=200, help="[notify] dispatch_concurrency")
    ap.add_argument("--sender", choices=("gateway", "memory"), default="gateway")
    ap.add_argument("--profile", help="write cProfile stats of the dispatch pass to this file")
    ap.add_argument("--serve-gateway", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve_gateway:
        serve_gateway(a.delay_ms)
        return
    print(json.dumps(run(a.notices, a.delay_ms, a.backend, a.concurrency, a.sender, a.profile),
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
