"""The MQTT listener against the real Mosquitto broker on 127.0.0.1:1883 (unique topics and client
ids per test): validation of gateway messages, batching into the import path, acknowledgement
only after commit (a crash means redelivery, a redelivery means duplicates, never double rows)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from dianfei.metering.gateways import Gateway, add_gateway, assign_gateway
from dianfei.metering.mqtt import (
    Listener,
    ListenOptions,
    ListenStats,
    MessageRejected,
    parse_message,
    publish,
)
from dianfei.metering.mqtt_security import PLAINTEXT
from tests.metering.live.conftest import load_meters

BROKER = "mqtt://127.0.0.1:1883"
CLOCK = FixedClock(datetime(2026, 3, 1, 1, 0, tzinfo=UTC))


def _broker_up() -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
        return True
    except OSError:
        return False


needs_broker = pytest.mark.skipif(not _broker_up(), reason="Mosquitto is not listening on 127.0.0.1:1883")


def message(mid: str, *readings: tuple[str, str, str, str], **extra: Any) -> bytes:
    return json.dumps({"schema": "dianfei.ami/1", "gateway_id": "GW-1", "message_id": mid,
                       "readings": [{"meter_id": m, "read_at": at, "register": r, "value": v}
                                    for m, at, r, v in readings], **extra}).encode()


# ---------------------------------------------------------------------------- the message schema

def test_parse_a_message() -> None:
    msg = parse_message(message("m1", ("MC001", "2026-03-01T00:00:00+08:00", "total", "123.45"),
                                ("MC002", "2026-02-28T16:00:00Z", "peak", "7")))
    assert (msg.gateway_id, msg.message_id, msg.rejected) == ("GW-1", "m1", [])
    assert msg.reads == [("MC001", datetime(2026, 2, 28, 16, 0, tzinfo=UTC), "total", "123.45"),
                         ("MC002", datetime(2026, 2, 28, 16, 0, tzinfo=UTC), "peak", "7")]


def test_json_numbers_are_decimals_never_floats() -> None:
    msg = parse_message(b'{"gateway_id": "g", "message_id": "m", "interval_minutes": 15, "intervals": '
                        b'[{"meter_id": "M", "ts": "2026-03-01T00:15:00+08:00", "kwh": 0.1}]}')
    assert msg.intervals == [("M", datetime(2026, 2, 28, 16, 15, tzinfo=UTC), "0.1")]
    assert msg.interval_minutes == 15


@pytest.mark.parametrize(("payload", "reason"), [
    (b"\xff\xfe garbage", "not JSON"),
    (b"[1, 2]", "a message is a JSON object"),
    (b'{"message_id": "m", "readings": []}', "gateway_id must be a non-empty text"),
    (b'{"gateway_id": "g", "message_id": "m"}', "both are empty"),
    (b'{"schema": "other/2", "gateway_id": "g", "message_id": "m"}', "unknown schema 'other/2'"),
    (b'{"gateway_id": "g", "message_id": "m", "readings": {}}', "readings and intervals must be lists"),
    (b'{"gateway_id": "g", "message_id": "m", "intervals": [{}], "interval_minutes": 7}',
     "interval_minutes must divide a day"),
    (b"[" * 100_000, "not JSON"),
    # found by thinking about the fuzz test's blind spots: Python refuses integers over 4,300 digits
    # with a plain ValueError (not a JSONDecodeError), which once would have stopped the listener
    (b'{"gateway_id": "g", "message_id": "m", "readings": [{"value": ' + b"9" * 5000 + b"}]}",
     "not JSON: Exceeds the limit"),
])
def test_garbage_payloads_are_rejected_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(MessageRejected, match=reason):
        parse_message(payload)


def test_bad_items_are_rejected_alone() -> None:
    msg = parse_message(message("m", ("MC001", "2026-03-01T00:00:00", "total", "1.00"),
                                ("MC001", "2026-03-01T00:00:00+08:00", "total", "2.00"),
                                ("", "2026-03-01T00:00:00+08:00", "total", "3.00"),
                                ("MC001", "yesterday", "total", "4.00")))
    assert [r[3] for r in msg.reads] == ["2.00"]
    assert msg.rejected == [("readings[0]", "read_at '2026-03-01T00:00:00' has no UTC offset"),
                            ("readings[2]", "meter_id must be a non-empty text"),
                            ("readings[3]", "read_at 'yesterday' is not ISO 8601")]
    msg = parse_message(b'{"gateway_id": "g", "message_id": "m", "readings": '
                        b'[{"meter_id": "M", "read_at": "2026-03-01T00:00:00+08:00", "register": "total",'
                        b' "value": true}, 5, {"meter_id": "M", "read_at": "2026-03-01T00:00:00+08:00",'
                        b' "register": "total", "value": NaN}]}')
    assert msg.rejected == [("readings[0]", 'value must be a decimal text such as "12345.67"'),
                            ("readings[1]", "a reading is an object"),
                            ("readings[2]", 'value must be a decimal text such as "12345.67"')]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["gateway_id", "message_id", "readings", "intervals", "interval_minutes",
                         "meter_id", "read_at", "register", "value", "ts", "kwh", "schema", "x"]),
        inner, max_size=6),
    max_leaves=25)


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
def test_parser_only_ever_rejects_with_a_reason(payload: bytes) -> None:
    try:
        msg = parse_message(payload)
    except MessageRejected as exc:
        assert exc.message
        return
    assert msg.gateway_id and msg.message_id
    for _, reason in msg.rejected:
        assert reason


# ---------------------------------------------------------------------------- against Mosquitto

#: persistent sessions opened by the tests, removed from the broker afterwards
SESSIONS: list[str] = []


@pytest.fixture
def topic() -> Iterator[str]:
    # ami/<gateway>/readings: the gateway is the level before the last
    yield f"dianfei-test/{uuid.uuid4().hex}/GW-1/readings"
    while SESSIONS:
        forget_session(SESSIONS.pop())


def start(db: Database, topic: str, tmp_path: Path, **kw: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run a listener in a thread; returns once it is subscribed."""
    ready = threading.Event()
    box: dict[str, Any] = {}
    ingest = kw.pop("ingest_reads", None)
    kw = {"client_id": f"t-{uuid.uuid4().hex[:10]}", "idle_timeout": 3.0, **kw}
    SESSIONS.append(kw["client_id"])
    kw.setdefault("security", PLAINTEXT)
    opts = ListenOptions(url=BROKER, topics=(topic,), rejected_dir=tmp_path / "rejected", **kw)
    listener = Listener(db, opts, clock=CLOCK, on_ready=ready.set, ingest_reads=ingest)

    def run() -> None:
        try:
            box["stats"] = listener.run()
        except BaseException as exc:  # surfaced by the test
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(15)
    box["listener"] = listener
    return thread, box


def finish(thread: threading.Thread, box: dict[str, Any]) -> ListenStats:
    thread.join(30)
    assert not thread.is_alive()
    if "error" in box:
        raise box["error"]
    return box["stats"]  # type: ignore[no-any-return]


def bound_meters(db: Database, n: int, gateway: str = "GW-1") -> list[str]:
    """``n`` meters (load_meters) reported by ``gateway``, which is on file."""
    meters = load_meters(db, n)
    add_gateway(db, CLOCK, Gateway(gateway, "10.0.0.1", 8899))
    for m in meters:
        assign_gateway(db, m, gateway)
    return meters


def stored(db: Database) -> list[tuple[str, str, int]]:
    with db.engine.connect() as conn:
        return [(r[0], r[1], int(r[2])) for r in conn.execute(text(
            "SELECT meter_id, register, value FROM register_reads ORDER BY meter_id, register, value"))]


def forget_session(client_id: str) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    c.connect("127.0.0.1", 1883)
    c.loop_start()
    c.disconnect()
    c.loop_stop()


@needs_broker
def test_listener_stores_validates_and_counts(db: Database, topic: str, tmp_path: Path) -> None:
    # given three meters of gateway GW-1 and a listener
    bound_meters(db, 3)
    thread, box = start(db, topic, tmp_path, max_messages=5)
    good1 = message("m1", ("MC001", "2026-03-01T00:00:00+08:00", "total", "100.25"),
                    ("MC002", "2026-03-01T00:00:00+08:00", "total", "200.50"))
    good2 = message("m2", ("MC003", "2026-03-01T00:00:00+08:00", "total", "300.75"),
                    ("MC001", "2026-03-01T00:00:00", "total", "999.00"))  # no offset: this item alone
    # when a gateway publishes two messages, garbage, a replay and a reading of an unknown meter
    publish(BROKER, topic, [good1, b"not json at all", good2, good1,
                            message("m3", ("NOPE", "2026-03-01T00:00:00+08:00", "total", "1.00"))])
    stats = finish(thread, box)
    # then every reading is accounted for exactly once
    assert (stats.messages, stats.readings) == (5, 6)
    assert (stats.accepted, stats.duplicates, stats.rejected) == (3, 2, 1)
    assert (stats.rejected_messages, stats.rejected_items) == (1, 1)
    assert stored(db) == [("MC001", "total", 10025), ("MC002", "total", 20050), ("MC003", "total", 30075)]
    # and the rejected payload and item are on record with their reasons
    lines = [json.loads(x) for x in (tmp_path / "rejected" / "rejected-2026-03-01.jsonl").read_text(
        encoding="utf-8").splitlines()]
    assert [(x["item"], x["reason"][:20]) for x in lines] == [
        (None, "not JSON: Expecting "), ("readings[1]", "read_at '2026-03-01T")]
    assert lines[0]["payload"] == "not json at all" and lines[1]["message_id"] == "m2"


@needs_broker
def test_a_crash_before_commit_means_redelivery_not_loss(db: Database, topic: str, tmp_path: Path) -> None:
    bound_meters(db, 2)
    client_id = f"t-{uuid.uuid4().hex[:10]}"

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("database went away")

    # given a listener whose storage fails on the first batch
    thread, box = start(db, topic, tmp_path, client_id=client_id, ingest_reads=broken)
    publish(BROKER, topic, [message("m1", ("MC001", "2026-03-01T00:00:00+08:00", "total", "5.00")),
                            message("m2", ("MC002", "2026-03-01T00:00:00+08:00", "total", "6.00"))])
    with pytest.raises(RuntimeError, match="database went away"):
        finish(thread, box)
    assert stored(db) == []
    # when the listener comes back with the same client id
    thread, box = start(db, topic, tmp_path, client_id=client_id, idle_timeout=1.5)
    stats = finish(thread, box)
    # then the broker delivers the unacknowledged messages again and they are stored once
    assert stats.accepted == 2 and stats.redelivered >= 1
    assert stored(db) == [("MC001", "total", 500), ("MC002", "total", 600)]
    # and a third start gets nothing: everything was acknowledged after the commit
    thread, box = start(db, topic, tmp_path, client_id=client_id, idle_timeout=0.8)
    assert finish(thread, box).messages == 0


@needs_broker
def test_intervals_go_to_the_interval_store(db: Database, topic: str, tmp_path: Path) -> None:
    bound_meters(db, 1)
    thread, box = start(db, topic, tmp_path, max_messages=1)
    publish(BROKER, topic, [json.dumps({
        "gateway_id": "GW-1", "message_id": "i1", "interval_minutes": 15,
        "intervals": [{"meter_id": "MC001", "ts": f"2026-03-01T00:{m:02d}:00+08:00", "kwh": "0.250"}
                      for m in (0, 15, 30, 45)]})])
    stats = finish(thread, box)
    assert (stats.intervals, stats.accepted, stats.rejected) == (4, 4, 0)


@needs_broker
def test_listen_command(db_env: dict[str, str], topic: str) -> None:
    client_id = f"t-{uuid.uuid4().hex[:10]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dianfei", "meters", "listen", "--mqtt", BROKER, "--topic", topic,
         "--client-id", client_id, "--max-messages", "2", "--idle-timeout", "20", "--json"],
        env={**os.environ, **db_env, "DIANFEI_NOW": "2026-03-01T09:00:00+08:00",
             "DIANFEI_MQTT_ALLOW_PLAINTEXT": "true"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith(f"subscribed to {topic}"), line + proc.stderr.read()
        publish(BROKER, topic, [b"{}", message("m1", ("UNKNOWN", "2026-03-01T00:00:00+08:00", "total", "1"))])
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        forget_session(client_id)
    assert proc.returncode == 0, err
    got = json.loads(out)
    assert {k: got[k] for k in ("messages", "readings", "accepted", "rejected", "rejected_messages",
                                "unauthorised")} == \
        {"messages": 2, "readings": 0, "accepted": 0, "rejected": 0, "rejected_messages": 2,
         "unauthorised": 1}
    assert [r["reason"] for r in got["rejections"]] == [
        "gateway_id must be a non-empty text", "gateway GW-1 is not on file (dianfei meters gateway add)"]


def test_bad_broker_url_is_a_clear_error(db: Database) -> None:
    from dianfei.core.errors import ValidationError

    with pytest.raises(ValidationError, match="broker URL must look like mqtt://host:1883"):
        Listener(db, ListenOptions(url="http://x", topics=("t",), security=PLAINTEXT), clock=CLOCK)
