"""Live meter data benchmarks: MQTT ingest into storage, and DL/T 645 polling.

    python -m bench.mqtt_ingest [--readings 200000] [--per-message 500] [--meters 10000]
                                [--poll-meters 1000] [--concurrency 32] [--backend sqlite|postgresql]

1. MQTT: builds a synthetic utility, publishes ``--readings`` register readings to Mosquitto on
   127.0.0.1:1883 as dianfei.ami/1 messages of ``--per-message`` readings each (a concentrator
   uploads its meters together), and runs the listener (QoS 1, ack after commit, Mosquitto's
   default in-flight window of 20) until every message is stored. The rate is readings stored per
   second from the first publish to the last commit, so publishing, parsing, validation and the
   import path's transactions are all inside it.
2. DL/T 645: ``--poll-meters`` meters behind the simulated concentrator, polled with
   ``--concurrency`` connections (total register, block reads off) and stored through the import path.

Prints one JSON line of figures as its last line.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.billrun import _database, _drop

BROKER = "mqtt://127.0.0.1:1883"


#: one gateway reports every meter of the benchmark (each reading is checked against the binding)
GATEWAY = "GW-BENCH"


def _payloads(meter_ids: list[str], readings: int, per_message: int, start: datetime) -> list[bytes]:
    """``readings`` total-register readings: every meter at successive quarter-hours."""
    out, batch = [], []
    n = len(meter_ids)
    for i in range(readings):
        m, step = i % n, i // n
        at = (start + timedelta(minutes=15 * step)).isoformat()
        batch.append({"meter_id": meter_ids[m], "read_at": at, "register": "total",
                      "value": f"{1000 + m % 997 + step * 0.25:.2f}"})
        if len(batch) == per_message:
            out.append(batch)
            batch = []
    if batch:
        out.append(batch)
    return [json.dumps({"schema": "dianfei.ami/1", "gateway_id": GATEWAY,
                        "message_id": f"bench-{k}", "readings": b}).encode() for k, b in enumerate(out)]


def run(readings: int, per_message: int, meters: int, poll_meters: int, concurrency: int,
        backend: str) -> dict[str, Any]:
    from dianfei import sim
    from dianfei.core.clock import FixedClock
    from dianfei.core.crypto import PiiCipher
    from dianfei.core.settings import load_settings
    from dianfei.customers.service import load_population
    from dianfei.db.engine import open_database
    from dianfei.metering.dlt645.client import Dlt645Config
    from dianfei.metering.dlt645.simulator import MeterSimulator, SimMeter
    from dianfei.metering.gateways import Gateway, add_gateway
    from dianfei.metering.mqtt import Listener, ListenOptions, publish
    from dianfei.metering.mqtt_security import PLAINTEXT
    from dianfei.metering.poll import poll

    tmp = Path(tempfile.mkdtemp(prefix="dianfei-bench-mqtt-"))
    url, pg_name = _database(backend, tmp)
    out: dict[str, Any] = {"backend": backend, "readings": readings, "per_message": per_message,
                           "meters": meters}
    client_id = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        db = open_database(load_settings({"DIANFEI_DATABASE_URL": url, "DIANFEI_DATA_DIR": str(tmp / "var")}))
        u = sim.build_utility(max(meters, poll_meters), seed=11)
        with db.engine.begin() as conn:
            load_population(conn, PiiCipher(b"b" * 32), regions=u.regions, stations=u.stations,
                            collectors=u.collectors, customers=u.customers, meters=u.meters)
        clock = FixedClock(datetime(2026, 3, 1, 1, 0, tzinfo=UTC))
        add_gateway(db, clock, Gateway(GATEWAY, "127.0.0.1", 8899))
        with db.engine.begin() as conn:
            from sqlalchemy import text as sql

            conn.execute(sql("UPDATE meters SET gateway_id = :g"), {"g": GATEWAY})

        # ------------------------------------------------------------ MQTT ingest
        meter_ids = u.meters["meter_id"].to_list()[:meters]
        payloads = _payloads(meter_ids, readings, per_message, datetime(2026, 3, 1, tzinfo=UTC))
        topic = f"dianfei-bench/{uuid.uuid4().hex}/{GATEWAY}/readings"
        ready = threading.Event()
        listener = Listener(db, ListenOptions(url=BROKER, topics=(topic,), client_id=client_id,
                                              max_messages=len(payloads), idle_timeout=60,
                                              rejected_dir=tmp / "rejected", security=PLAINTEXT),
                            clock=clock, on_ready=ready.set)
        box: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: box.update(stats=listener.run()), daemon=True)
        thread.start()
        if not ready.wait(15):
            raise RuntimeError("listener did not subscribe")
        t0 = time.perf_counter()
        publish(BROKER, topic, payloads)
        out["publish_s"] = round(time.perf_counter() - t0, 2)
        thread.join(600)
        elapsed = time.perf_counter() - t0
        stats = box["stats"]
        out["mqtt"] = {"messages": stats.messages, "accepted": stats.accepted,
                       "duplicates": stats.duplicates, "rejected": stats.rejected,
                       "batches": stats.batches, "elapsed_s": round(elapsed, 2),
                       "readings_per_s": round(stats.accepted / elapsed)}
        from sqlalchemy import text

        with db.engine.connect() as conn:
            out["mqtt"]["rows_in_register_reads"] = conn.execute(
                text("SELECT COUNT(*) FROM register_reads")).scalar_one()

        # ------------------------------------------------------------ DL/T 645 poll
        m = u.meters.head(poll_meters)
        sims = [SimMeter(a, total=Decimal(1000 + i) + Decimal("0.5"))
                for i, a in enumerate(m["comm_address"].to_list())]
        with db.engine.begin() as conn:
            # polled through the configured gateway (the simulator), not the MQTT gateway
            conn.execute(text("UPDATE meters SET gateway_id = NULL"))
            ids = m["meter_id"].to_list()
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                marks = ", ".join(f":m{j}" for j in range(len(chunk)))
                conn.execute(text(f"UPDATE meters SET registers = 'total' WHERE meter_id IN ({marks})"),
                             {f"m{j}": x for j, x in enumerate(chunk)})
        with MeterSimulator(sims) as simulator:
            cfg = Dlt645Config(host=simulator.host, port=simulator.port, timeout_s=5, retries=1)
            t1 = time.perf_counter()
            res = poll(db, cfg, clock=FixedClock(datetime(2026, 3, 2, 1, 0, tzinfo=UTC)),
                       meter_ids=ids, concurrency=concurrency)
            poll_s = time.perf_counter() - t1
        out["poll"] = {"meters": res.meters, "succeeded": res.succeeded, "failed": res.failed,
                       "accepted": res.accepted, "concurrency": concurrency, "elapsed_s": round(poll_s, 2),
                       "meters_per_s": round(res.succeeded / poll_s)}
        db.engine.dispose()
    finally:
        _drop(pg_name)
        _forget(client_id)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def _forget(client_id: str) -> None:
    """Remove the benchmark's persistent session from the broker."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    try:
        c.connect("127.0.0.1", 1883)
        c.loop_start()
        c.disconnect()
        c.loop_stop()
    except OSError:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--per-message", type=int, default=500)
    ap.add_argument("--meters", type=int, default=10_000)
    ap.add_argument("--poll-meters", type=int, default=1_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    a = ap.parse_args()
    print(json.dumps(run(a.readings, a.per_message, a.meters, a.poll_meters, a.concurrency, a.backend)))


if __name__ == "__main__":
    main()
