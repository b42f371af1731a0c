"""AMI gateway messages over MQTT (采集主站 MQTT 接入): validate, batch, store, then acknowledge.

Concentrators and AMI head-ends publish their meters' readings as JSON (schema
``dianfei.ami/1``, documented in docs/metering-live.md)::

    {"schema": "dianfei.ami/1", "gateway_id": "GW-0001", "message_id": "GW-0001-000042",
     "sent_at": "2026-03-01T00:05:00+08:00",
     "readings": [{"meter_id": "M1", "read_at": "2026-03-01T00:00:00+08:00",
                   "register": "total", "value": "12345.67"}],
     "interval_minutes": 15,
     "intervals": [{"meter_id": "M1", "ts": "2026-02-28T23:45:00+08:00", "kwh": "0.25"}]}

Delivery is at-least-once and storage exactly-once:

* the listener subscribes with QoS 1 on a persistent session (clean session off, a stable client
  id), so the broker keeps what it has not been told is done, also while the listener is down;
* messages are acknowledged (PUBACK, paho-mqtt's manual ack) only **after** the batch they belong
  to is committed by :func:`dianfei.metering.ingest.ingest_reads` / ``ingest_intervals`` — a crash
  before the commit means the broker delivers them again;
* a redelivered message is harmless: the import path counts rows already stored as duplicates.

Messages are gathered into batches flushed by size, by age (about 200 ms) or when the broker's
in-flight window (Mosquitto's ``max_inflight_messages``, 20 by default) is full — the broker
sends no more unacknowledged messages than that, so waiting longer would only idle.

Who may report what: the broker authenticates each gateway (its own credentials or client
certificate, over TLS) and lets it publish only under its own topic ``ami/<gateway_id>/readings``
(docs/metering-live.md has the Mosquitto ACL); the listener takes the gateway from the topic,
refuses a message from a gateway not on file or claiming another gateway's id, and refuses every
reading or interval of a meter not bound to that gateway (``meters.gateway_id``) — such rows are
never stored. Readings that are stored are judged by :mod:`dianfei.metering.vee.plausibility`
before the messages are acknowledged: an impossible one is held for a person and never moves a
prepaid balance.

Bad input never stops the listener: a payload that is not a valid message is rejected whole, a
bad item (a reading without offset, say) alone; each rejection is counted and appended with its
reason to ``{data_dir}/mqtt/rejected-YYYY-MM-DD.jsonl`` before the message is acknowledged. Rows
the import path refuses (unknown meter, conflicting value) land in its quarantine, as for files.
"""

from __future__ import annotations

import json
import queue
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dianfei.core.clock import BUSINESS_TZ, Clock
from dianfei.core.errors import RetryableError, ValidationError
from dianfei.metering.mqtt_security import (
    TOPIC_LAYOUT,
    MqttSecurity,
    MqttTlsError,
    gateway_of_topic,
    load_security,
)

if TYPE_CHECKING:
    from dianfei.db.engine import Database
    from dianfei.metering.ingest import IngestResult

SCHEMA = "dianfei.ami/1"
#: readings per batch before a flush regardless of age
BATCH_READINGS = 50_000
FLUSH_SECONDS = 0.2
#: rejections kept in the statistics for the operator (all of them go to the file)
SHOWN_REJECTIONS = 20


class MessageRejected(ValidationError):
    """A payload that is not a dianfei.ami/1 message; the reason says what is wrong."""

    code = "mqtt_message_invalid"


@dataclass
class ParsedMessage:
    gateway_id: str
    message_id: str
    #: (meter_id, read_at UTC, register, value text)
    reads: list[tuple[str, datetime, str, str]] = field(default_factory=list)
    interval_minutes: int | None = None
    #: (meter_id, ts UTC, kwh text)
    intervals: list[tuple[str, datetime, str]] = field(default_factory=list)
    #: (item path, reason) of items rejected on their own
    rejected: list[tuple[str, str]] = field(default_factory=list)
    #: the index in the payload of each of ``reads`` / ``intervals`` (for refusal records)
    read_items: list[int] = field(default_factory=list)
    interval_items: list[int] = field(default_factory=list)


def _instant(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be an ISO 8601 text with offset")
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{what} {value!r} is not ISO 8601") from None
    if instant.tzinfo is None:
        raise ValueError(f"{what} {value!r} has no UTC offset")
    return instant.astimezone(UTC)


def _quantity(value: Any, what: str) -> str:
    # JSON numbers are parsed as Decimal (never float); text is passed on for the import path
    # to check its places, exactly as for a CSV file
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(f"{what} must be a decimal text such as \"12345.67\"")
    text = str(value).strip()
    if not text:
        raise ValueError(f"{what} is empty")
    return text


def _text(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} must be a non-empty text")
    return value.strip()


def parse_message(payload: bytes) -> ParsedMessage:
    """Validate one payload. Raises :class:`MessageRejected` for a payload that cannot be a
    message at all; items that are wrong on their own are listed in ``rejected``."""
    try:
        doc = json.loads(payload, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, a 5,000-digit number
        raise MessageRejected(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MessageRejected("a message is a JSON object")
    schema = doc.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise MessageRejected(f"unknown schema {schema!r} (expected {SCHEMA})")
    try:
        gateway_id, message_id = _text(doc, "gateway_id"), _text(doc, "message_id")
    except ValueError as exc:
        raise MessageRejected(str(exc)) from None
    readings, intervals = doc.get("readings", []), doc.get("intervals", [])
    if not isinstance(readings, list) or not isinstance(intervals, list):
        raise MessageRejected("readings and intervals must be lists")
    if not readings and not intervals:
        raise MessageRejected("a message carries readings or intervals (both are empty)")
    msg = ParsedMessage(gateway_id, message_id)
    if intervals:
        minutes = doc.get("interval_minutes")
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 0 < minutes <= 1440 \
                or 1440 % minutes:
            raise MessageRejected(f"interval_minutes must divide a day (5, 15, 30, 60 …), got {minutes!r}")
        msg.interval_minutes = minutes
    for i, item in enumerate(readings):
        try:
            if not isinstance(item, dict):
                raise ValueError("a reading is an object")
            msg.reads.append((_text(item, "meter_id"), _instant(item.get("read_at"), "read_at"),
                              _text(item, "register"), _quantity(item.get("value"), "value")))
            msg.read_items.append(i)
        except ValueError as exc:
            msg.rejected.append((f"readings[{i}]", str(exc)))
    for i, item in enumerate(intervals):
        try:
            if not isinstance(item, dict):
                raise ValueError("an interval is an object")
            msg.intervals.append((_text(item, "meter_id"), _instant(item.get("ts"), "ts"),
                                  _quantity(item.get("kwh"), "kwh")))
            msg.interval_items.append(i)
        except ValueError as exc:
            msg.rejected.append((f"intervals[{i}]", str(exc)))
    return msg


# ---------------------------------------------------------------------------- the listener

@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    #: mqtts:// (or ssl://): TLS whatever the settings say
    tls: bool = False


def parse_url(url: str) -> BrokerUrl:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl") or not parts.hostname:
        raise ValidationError(f"broker URL must look like mqtt://host:1883 or mqtts://host:8883, "
                              f"got {url!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ValidationError(f"broker URL {url!r} has a bad port") from None
    return BrokerUrl(parts.hostname, port, parts.username, parts.password, tls)


def _security(broker: BrokerUrl, security: MqttSecurity) -> MqttSecurity:
    if broker.tls and not security.tls:
        security = replace(security, tls=True)
    security.check()
    return security


def _connect_client(client: Any, broker: BrokerUrl, security: MqttSecurity) -> None:
    security.apply(client)
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    try:
        client.connect(broker.host, broker.port, keepalive=30)
    except ssl.SSLError as exc:
        # an untrusted or mismatched certificate is a setting to fix, never retried blindly
        raise MqttTlsError(f"TLS with the MQTT broker {broker.host}:{broker.port} failed: "
                           f"{exc.reason or exc} (check [metering.mqtt] ca_file, cert_file, "
                           "key_file)") from None
    except OSError as exc:
        raise RetryableError(f"MQTT broker {broker.host}:{broker.port} unreachable: "
                             f"{exc.strerror or exc}") from None


@dataclass(frozen=True)
class ListenOptions:
    url: str
    topics: tuple[str, ...]
    qos: int = 1
    #: a stable id keeps the session (and unacknowledged messages) across restarts
    client_id: str = "dianfei-ami-listener"
    batch_readings: int = BATCH_READINGS
    flush_seconds: float = FLUSH_SECONDS
    #: flush when this many messages wait for their ack (the broker's in-flight window)
    max_inflight: int = 20
    max_messages: int | None = None
    idle_timeout: float | None = None
    max_seconds: float | None = None
    rejected_dir: Path | None = None
    #: TLS and credentials; None: the configured ones ([metering.mqtt], DIANFEI_MQTT_*)
    security: MqttSecurity | None = None


@dataclass
class ListenStats:
    messages: int = 0
    redelivered: int = 0
    readings: int = 0
    intervals: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    rejected_messages: int = 0
    rejected_items: int = 0
    batches: int = 0
    #: readings and intervals refused because their gateway may not report their meter
    unauthorised: int = 0
    #: stored readings held by the plausibility check (on the VEE worklist)
    held: int = 0
    elapsed_s: float = 0.0
    rejections: list[dict[str, Any]] = field(default_factory=list)

    def add(self, result: IngestResult) -> None:
        self.accepted += result.accepted
        self.rejected += result.rejected
        self.duplicates += result.duplicates

    def to_json(self) -> dict[str, Any]:
        return {"messages": self.messages, "redelivered": self.redelivered, "readings": self.readings,
                "intervals": self.intervals, "accepted": self.accepted, "rejected": self.rejected,
                "duplicates": self.duplicates, "rejected_messages": self.rejected_messages,
                "rejected_items": self.rejected_items, "batches": self.batches,
                "unauthorised": self.unauthorised, "held": self.held,
                "elapsed_s": round(self.elapsed_s, 3), "rejections": self.rejections}


class RejectLog:
    """Append-only JSON lines of every rejected payload or item, one file per business day."""

    def __init__(self, directory: Path, clock: Clock) -> None:
        self.directory = directory
        self.clock = clock
        self.lines: list[str] = []

    def add(self, record: dict[str, Any]) -> None:
        self.lines.append(json.dumps(record, ensure_ascii=False, default=str))

    def flush(self) -> None:
        if not self.lines:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        day = self.clock.now().astimezone(BUSINESS_TZ).date()
        with (self.directory / f"rejected-{day.isoformat()}.jsonl").open("a", encoding="utf-8") as fh:
            fh.write("\n".join(self.lines) + "\n")
            fh.flush()
        self.lines.clear()


IngestReads = Callable[..., "IngestResult"]


class Listener:
    """Subscribe, batch, store, acknowledge. ``run()`` blocks until a stop condition."""

    def __init__(self, db: Database, options: ListenOptions, *, clock: Clock,
                 ingest_reads: IngestReads | None = None, ingest_intervals: IngestReads | None = None,
                 on_ready: Callable[[], None] | None = None) -> None:
        from dianfei.metering import ingest

        if options.qos not in (0, 1, 2):
            raise ValidationError(f"qos must be 0, 1 or 2, got {options.qos}")
        if not options.topics:
            raise ValidationError("give at least one --topic")
        self.db = db
        self.options = options
        self.clock = clock
        self.broker = parse_url(options.url)
        self.security = _security(self.broker, options.security or load_security(db.settings))
        self.ingest_reads = ingest_reads or ingest.ingest_reads
        self.ingest_intervals = ingest_intervals or ingest.ingest_intervals
        self.on_ready = on_ready
        self.stats = ListenStats()
        self.rejects = RejectLog(options.rejected_dir or Path(db.settings.data_dir) / "mqtt", clock)
        self._inbox: queue.Queue[Any] = queue.Queue()
        self._subscribed = threading.Event()
        self._connect_error: str | None = None
        self._client: Any = None
        self._stop = threading.Event()
        self._gateways: set[str] = set()

    # ------------------------------------------------------------------ MQTT plumbing
    def _connect(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.options.client_id,
                             clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
        def on_connect(c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
            if reason.is_failure:
                self._connect_error = f"broker refused the connection: {reason}"
                self._subscribed.set()
                return
            c.subscribe([(t, self.options.qos) for t in self.options.topics])

        def on_subscribe(_c: Any, _u: Any, _mid: Any, reasons: Any, _props: Any) -> None:
            bad = [str(r) for r in reasons if r.is_failure]
            if bad:
                self._connect_error = f"subscription refused: {', '.join(bad)}"
            self._subscribed.set()

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = lambda _c, _u, message: self._inbox.put(message)
        _connect_client(client, self.broker, self.security)
        client.loop_start()
        self._client = client
        if not self._subscribed.wait(10) or self._connect_error:
            self._disconnect()
            raise RetryableError(self._connect_error or "no subscription acknowledgement within 10 s")
        if self.on_ready is not None:
            self.on_ready()

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def stop(self) -> None:
        """Ask ``run()`` to flush what it holds and return (from another thread)."""
        self._stop.set()

    # ------------------------------------------------------------------ the loop
    def run(self) -> ListenStats:
        started = time.monotonic()
        self._connect()
        opts = self.options
        pending: list[Any] = []
        batch: list[tuple[Any, ParsedMessage]] = []
        waiting = 0
        oldest: float | None = None
        last_message = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                wait = 0.05
                if oldest is not None:
                    wait = max(0.0, min(wait, oldest + opts.flush_seconds - now))
                try:
                    message = self._inbox.get(timeout=wait)
                except queue.Empty:
                    message = None
                if message is not None:
                    last_message = time.monotonic()
                    oldest = oldest if oldest is not None else last_message
                    pending.append(message)
                    waiting += self._take(message, batch)
                now = time.monotonic()
                done = (opts.max_messages is not None and self.stats.messages >= opts.max_messages) \
                    or (opts.idle_timeout is not None and now - last_message >= opts.idle_timeout
                        and self._inbox.empty()) \
                    or (opts.max_seconds is not None and now - started >= opts.max_seconds) \
                    or self._stop.is_set()
                if pending and (done or waiting >= opts.batch_readings or len(pending) >= opts.max_inflight
                                or (oldest is not None and now - oldest >= opts.flush_seconds)):
                    self._flush(pending, batch)
                    pending, batch, waiting, oldest = [], [], 0, None
                if done:
                    break
        finally:
            self._disconnect()
            self.stats.elapsed_s = time.monotonic() - started
        return self.stats

    def _reject(self, message: Any, reason: str, *, item: str | None = None,
                ids: tuple[str | None, str | None] = (None, None)) -> None:
        record: dict[str, Any] = {
            "received_at": self.clock.now().isoformat(), "topic": message.topic, "mid": message.mid,
            "gateway_id": ids[0], "message_id": ids[1], "item": item, "reason": reason}
        if item is None:
            record["payload"] = message.payload.decode("utf-8", errors="backslashreplace")[:65536]
        self.rejects.add(record)
        if len(self.stats.rejections) < SHOWN_REJECTIONS:
            self.stats.rejections.append({k: v for k, v in record.items() if k != "payload"})

    def _take(self, message: Any, batch: list[tuple[Any, ParsedMessage]]) -> int:
        """Validate one message and, when it may be stored, add it to the batch; returns the
        readings and intervals it adds."""
        self.stats.messages += 1
        if message.dup:
            self.stats.redelivered += 1
        try:
            parsed = parse_message(message.payload)
        except MessageRejected as exc:
            self.stats.rejected_messages += 1
            self._reject(message, exc.message)
            return 0
        except Exception as exc:  # a parser bug must not stop the listener nor lose the payload
            self.stats.rejected_messages += 1
            self._reject(message, f"could not be parsed ({type(exc).__name__}: {exc})")
            return 0
        ids = (parsed.gateway_id, parsed.message_id)
        refusal = self._sender_refusal(message.topic, parsed.gateway_id)
        if refusal is not None:
            self.stats.rejected_messages += 1
            self.stats.unauthorised += len(parsed.reads) + len(parsed.intervals)
            self._reject(message, refusal, ids=ids)
            return 0
        for item, reason in parsed.rejected:
            self.stats.rejected_items += 1
            self._reject(message, reason, item=item, ids=ids)
        batch.append((message, parsed))
        self.stats.readings += len(parsed.reads)
        self.stats.intervals += len(parsed.intervals)
        return len(parsed.reads) + len(parsed.intervals)

    def _sender_refusal(self, topic: str, claimed: str) -> str | None:
        """Why a message may not be taken from this topic at all, or None."""
        from dianfei.metering.gateways import gateways

        sender = gateway_of_topic(topic)
        if sender is None:
            return f"topic {topic!r} names no gateway (expected {TOPIC_LAYOUT})"
        if claimed != sender:
            return (f"gateway_id {claimed!r} in the message is not the gateway of the topic "
                    f"({sender!r}): a gateway reports only as itself")
        if sender not in self._gateways:
            self._gateways = set(gateways(self.db))  # one added since: look again, once
            if sender not in self._gateways:
                return f"gateway {sender} is not on file (dianfei meters gateway add)"
        return None

    def _bound(self, batch: list[tuple[Any, ParsedMessage]]) -> tuple[
            list[tuple[str, datetime, str, str]], dict[int, list[tuple[str, datetime, str]]]]:
        """The batch's readings and intervals whose meter is bound to the gateway that sent them;
        the others are refused ("gateway G may not report meter M"). A meter that is not on file
        at all goes on to the import path, which quarantines it as an unknown meter."""
        from dianfei.metering.gateways import gateways_of

        meter_ids = {r[0] for _, p in batch for r in p.reads} | {
            i[0] for _, p in batch for i in p.intervals}
        bound = gateways_of(self.db, sorted(meter_ids))
        reads: list[tuple[str, datetime, str, str]] = []
        intervals: dict[int, list[tuple[str, datetime, str]]] = {}
        for message, p in batch:

            def allowed(meter: str, item: str, message: Any = message, p: ParsedMessage = p) -> bool:
                if bound.get(meter, p.gateway_id) == p.gateway_id:
                    return True
                self.stats.unauthorised += 1
                self.stats.rejected_items += 1
                self._reject(message, f"gateway {p.gateway_id} may not report meter {meter}",
                             item=item, ids=(p.gateway_id, p.message_id))
                return False

            reads.extend(r for r, i in zip(p.reads, p.read_items, strict=True)
                         if allowed(r[0], f"readings[{i}]"))
            if p.intervals:
                assert p.interval_minutes is not None
                intervals.setdefault(p.interval_minutes, []).extend(
                    r for r, i in zip(p.intervals, p.interval_items, strict=True)
                    if allowed(r[0], f"intervals[{i}]"))
        return reads, intervals

    def _flush(self, pending: list[Any], batch: list[tuple[Any, ParsedMessage]]) -> None:
        import polars as pl

        from dianfei.metering.vee import plausibility

        reads, intervals = self._bound(batch)
        origin = f"mqtt://{self.broker.host}:{self.broker.port}/{','.join(self.options.topics)}"
        if reads:
            meter_ids, read_at, registers, values = (list(col) for col in zip(*reads, strict=True))
            frame = pl.DataFrame({
                "meter_id": pl.Series(meter_ids, dtype=pl.String),
                "read_at": pl.Series(read_at, dtype=pl.Datetime("us", "UTC")),
                "register": pl.Series(registers, dtype=pl.String),
                "value": pl.Series(values, dtype=pl.String),
                "source": pl.Series(["ami"] * len(reads), dtype=pl.String)})
            self.stats.add(self.ingest_reads(self.db, frame, origin=origin, clock=self.clock))
            # judged before the ack: a crash in between means redelivery, and judging again
            self.stats.held += plausibility.hold_implausible(
                self.db, self.clock, frame.select("meter_id", "read_at", "register"))
        for minutes, rows in intervals.items():
            meter_ids, ts, kwh = (list(col) for col in zip(*rows, strict=True))
            frame = pl.DataFrame({"meter_id": pl.Series(meter_ids, dtype=pl.String),
                                  "ts": pl.Series(ts, dtype=pl.Datetime("us", "UTC")),
                                  "kwh": pl.Series(kwh, dtype=pl.String)})
            self.stats.add(self.ingest_intervals(self.db, frame, interval_minutes=minutes,
                                                 origin=origin, clock=self.clock))
        self.rejects.flush()
        # committed (or recorded as rejected): only now may the broker forget these messages
        for message in pending:
            if message.qos > 0 and self._client is not None:
                self._client.ack(message.mid, message.qos)
        self.stats.batches += 1


def listen(db: Database, options: ListenOptions, *, clock: Clock,
           on_ready: Callable[[], None] | None = None) -> ListenStats:
    """Run the listener until a stop condition; returns its statistics."""
    return Listener(db, options, clock=clock, on_ready=on_ready).run()


# ---------------------------------------------------------------------------- publishing

def publish(url: str, topic: str, payloads: Iterable[bytes | str], *, qos: int = 1,
            client_id: str | None = None, window: int = 100,
            security: MqttSecurity | None = None) -> int:
    """Publish payloads and wait until the broker has them all (for gateways' tests and the
    benchmark); keeps up to ``window`` messages in flight. Returns the number published.
    ``security``: TLS and the gateway's credentials (None: plaintext, a local test broker)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    broker = parse_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)
    _connect_client(client, broker, _security(broker, security or MqttSecurity(allow_plaintext=True)))
    client.loop_start()
    published = 0
    in_flight: deque[Any] = deque()
    try:
        for payload in payloads:
            in_flight.append(client.publish(topic, payload, qos=qos))
            published += 1
            while len(in_flight) > window * 4:
                _confirm(in_flight.popleft())
        while in_flight:
            _confirm(in_flight.popleft())
    finally:
        client.disconnect()
        client.loop_stop()
    return published


def _confirm(info: Any) -> None:
    info.wait_for_publish(30)
    if not info.is_published():
        raise RetryableError("the MQTT broker did not confirm a publish within 30 s")
