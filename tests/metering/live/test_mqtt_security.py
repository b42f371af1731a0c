"""Meter data that cannot be forged (issue 17): TLS to the broker, gateways bound to their meters,
and impossible readings held before they can move a prepaid account to a cut-off.

The TLS tests start a Mosquitto of their own on a free port, with a CA and server certificate made
here, per-gateway passwords and the ACL of docs/metering-live.md; the others use the plaintext
broker on 127.0.0.1:1883 like test_mqtt.py."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import text

from dianfei.core.clock import FixedClock
from dianfei.core.errors import ValidationError
from dianfei.db.engine import Database
from dianfei.metering.gateways import Gateway, add_gateway, assign_gateway
from dianfei.metering.mqtt import Listener, ListenOptions, ListenStats, publish
from dianfei.metering.mqtt_security import PLAINTEXT, MqttSecurity, MqttTlsError, load_security
from tests.metering.live.conftest import load_meters
from tests.metering.live.test_mqtt import BROKER, CLOCK, forget_session, needs_broker, stored

MOSQUITTO = Path("/usr/sbin/mosquitto")
PASSWD = Path("/usr/bin/mosquitto_passwd")


def reading(gateway: str, mid: str, *rows: tuple[str, str, str]) -> bytes:
    """A dianfei.ami/1 message of total-register readings (meter, read_at, value)."""
    return json.dumps({"schema": "dianfei.ami/1", "gateway_id": gateway, "message_id": mid,
                       "readings": [{"meter_id": m, "read_at": at, "register": "total", "value": v}
                                    for m, at, v in rows]}).encode()


def run_listener(db: Database, url: str, topic: str, tmp_path: Path, security: MqttSecurity,
                 **kw: Any) -> tuple[threading.Thread, dict[str, Any]]:
    ready = threading.Event()
    box: dict[str, Any] = {}
    client_id = f"t-{uuid.uuid4().hex[:10]}"
    box["client_id"] = client_id
    listener = Listener(db, ListenOptions(url=url, topics=(topic,), client_id=client_id,
                                          rejected_dir=tmp_path / "rejected", security=security,
                                          **{"idle_timeout": 2.0, **kw}),
                        clock=CLOCK, on_ready=ready.set)

    def run() -> None:
        try:
            box["stats"] = listener.run()
        except BaseException as exc:  # surfaced by the test
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(20)
    return thread, box


def finish(thread: threading.Thread, box: dict[str, Any]) -> ListenStats:
    thread.join(30)
    assert not thread.is_alive()
    if "error" in box:
        raise box["error"]
    return box["stats"]  # type: ignore[no-any-return]


def rejections(tmp_path: Path) -> list[dict[str, Any]]:
    files = sorted((tmp_path / "rejected").glob("rejected-*.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines()]


def count(db: Database, table: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


# ---------------------------------------------------------------------------- settings

def test_plaintext_is_refused_unless_allowed_explicitly() -> None:
    with pytest.raises(ValidationError, match=r"\[metering.mqtt\] tls = false: meter readings would "
                                              r"travel unencrypted.*allow_plaintext = true"):
        load_security(None, env={})
    assert load_security(None, env={"DIANFEI_MQTT_ALLOW_PLAINTEXT": "true"}) == PLAINTEXT
    with pytest.raises(ValidationError, match=r"\[metering.mqtt\] tls must be true or false, got 'maybe'"):
        load_security(None, env={"DIANFEI_MQTT_TLS": "maybe"})
    with pytest.raises(ValidationError, match=r"\[metering.mqtt\] ca_file: /nowhere/ca.pem is not a "
                                              r"readable file"):
        load_security(None, env={"DIANFEI_MQTT_TLS": "1", "DIANFEI_MQTT_CA_FILE": "/nowhere/ca.pem"})
    with pytest.raises(ValidationError, match=r"\[metering.mqtt\] key_file is set but cert_file is not"):
        MqttSecurity(tls=True, key_file=__file__).check()


def test_the_listener_refuses_to_start_in_plaintext_by_default(db: Database) -> None:
    with pytest.raises(ValidationError, match=r"\[metering.mqtt\] tls = false"):
        Listener(db, ListenOptions(url=BROKER, topics=("ami/+/readings",)), clock=CLOCK)
    # an mqtts:// URL means TLS whatever the settings say (and needs nothing else here)
    got = Listener(db, ListenOptions(url="mqtts://localhost", topics=("t",),
                                     security=MqttSecurity()), clock=CLOCK)
    assert (got.broker.port, got.security.tls) == (8883, True)


# ---------------------------------------------------------------------------- TLS, a real broker

@dataclass(frozen=True)
class TlsBroker:
    url: str
    ca_file: str
    passwords: dict[str, str]

    def as_gateway(self, gateway: str, *, ca: bool = True) -> MqttSecurity:
        return MqttSecurity(tls=True, ca_file=self.ca_file if ca else None, username=gateway,
                            password=self.passwords[gateway])


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost / 127.0.0.1 signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)  # certificates must be valid for the real broker's real clock
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dianfei test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return paths


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    if not MOSQUITTO.exists() or not PASSWD.exists():
        pytest.skip("mosquitto / mosquitto_passwd not installed")
    d = tmp_path_factory.mktemp("mosquitto")
    ca, cert, key = _certificates(d)
    passwords = {"dianfei-listener": uuid.uuid4().hex, "GW-A": uuid.uuid4().hex,
                 "GW-B": uuid.uuid4().hex}
    (d / "passwd").write_text("", encoding="utf-8")
    for user, password in passwords.items():
        subprocess.run([str(PASSWD), "-b", str(d / "passwd"), user, password], check=True,
                       capture_output=True)
    # the ACL of docs/metering-live.md: each gateway publishes only under its own id
    (d / "acl").write_text("user dianfei-listener\ntopic read ami/+/readings\n\n"
                           "pattern write ami/%u/readings\n", encoding="utf-8")
    port = _free_port()
    # started as root, Mosquitto would switch to its own user, who cannot read pytest's tmp dirs
    user = "user root\n" if os.geteuid() == 0 else ""
    (d / "mosquitto.conf").write_text(
        f"{user}per_listener_settings false\nallow_anonymous false\npassword_file {d / 'passwd'}\n"
        f"acl_file {d / 'acl'}\npersistence false\nlog_dest stderr\n"
        f"listener {port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
        "tls_version tlsv1.2\n", encoding="utf-8")
    proc = subprocess.Popen([str(MOSQUITTO), "-c", str(d / "mosquitto.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    assert proc.stderr is not None
                    pytest.fail(f"mosquitto did not start: {proc.stderr.read().decode()}")
                time.sleep(0.1)
        yield TlsBroker(f"mqtts://localhost:{port}", str(ca), passwords)
    finally:
        proc.terminate()
        proc.wait(10)


def bind(db: Database, gateway: str, *meters: str) -> None:
    add_gateway(db, CLOCK, Gateway(gateway, "10.0.0.1", 8899))
    for m in meters:
        assign_gateway(db, m, gateway)


def test_a_reading_arrives_over_tls_with_the_gateways_own_credentials(
        db: Database, tls_broker: TlsBroker, tmp_path: Path) -> None:
    # given meter MC001 of gateway GW-A and a listener trusting the test CA
    load_meters(db, 1)
    bind(db, "GW-A", "MC001")
    listener_sec = MqttSecurity(tls=True, ca_file=tls_broker.ca_file, username="dianfei-listener",
                                password=tls_broker.passwords["dianfei-listener"])
    thread, box = run_listener(db, tls_broker.url, "ami/+/readings", tmp_path, listener_sec,
                               max_messages=1, idle_timeout=10.0)
    # when GW-A publishes over TLS as itself
    publish(tls_broker.url, "ami/GW-A/readings",
            [reading("GW-A", "a1", ("MC001", "2026-03-01T00:00:00+08:00", "123.45"))],
            security=tls_broker.as_gateway("GW-A"))
    stats = finish(thread, box)
    # then the reading is stored
    assert (stats.messages, stats.accepted) == (1, 1)
    assert stored(db) == [("MC001", "total", 12345)]


def test_a_client_without_the_ca_is_refused_and_nothing_is_stored(
        db: Database, tls_broker: TlsBroker, tmp_path: Path) -> None:
    load_meters(db, 1)
    # a gateway that does not trust the CA (the system's CAs only) cannot connect
    with pytest.raises(MqttTlsError, match=r"TLS with the MQTT broker localhost:\d+ failed: "
                                           "CERTIFICATE_VERIFY_FAILED"):
        publish(tls_broker.url, "ami/GW-A/readings",
                [reading("GW-A", "x", ("MC001", "2026-03-01T00:00:00+08:00", "1.00"))],
                security=tls_broker.as_gateway("GW-A", ca=False))
    # nor can a listener: a setting to fix, named
    listener = Listener(db, ListenOptions(
        url=tls_broker.url, topics=("ami/+/readings",), client_id=f"t-{uuid.uuid4().hex[:10]}",
        security=MqttSecurity(tls=True, username="dianfei-listener",
                              password=tls_broker.passwords["dianfei-listener"]),
        idle_timeout=0.5), clock=CLOCK)
    with pytest.raises(MqttTlsError, match=r"check \[metering.mqtt\] ca_file"):
        listener.run()
    assert stored(db) == []


def test_the_broker_lets_a_gateway_publish_only_under_its_own_id(
        db: Database, tls_broker: TlsBroker, tmp_path: Path) -> None:
    # given meters of GW-A and GW-B, and a listener
    load_meters(db, 2)
    bind(db, "GW-A", "MC001")
    bind(db, "GW-B", "MC002")
    listener_sec = MqttSecurity(tls=True, ca_file=tls_broker.ca_file, username="dianfei-listener",
                                password=tls_broker.passwords["dianfei-listener"])
    thread, box = run_listener(db, tls_broker.url, "ami/+/readings", tmp_path, listener_sec,
                               idle_timeout=2.0)
    # when GW-A, with its own password, publishes on GW-B's topic as GW-B, then on its own
    publish(tls_broker.url, "ami/GW-B/readings",
            [reading("GW-B", "forged", ("MC002", "2026-03-01T00:00:00+08:00", "999999.00"))],
            security=tls_broker.as_gateway("GW-A"))
    publish(tls_broker.url, "ami/GW-A/readings",
            [reading("GW-A", "a1", ("MC001", "2026-03-01T00:00:00+08:00", "10.00"))],
            security=tls_broker.as_gateway("GW-A"))
    stats = finish(thread, box)
    # then the broker's ACL dropped the forged message: only GW-A's own reading arrived
    assert (stats.messages, stats.accepted) == (1, 1)
    assert stored(db) == [("MC001", "total", 1000)]


# ---------------------------------------------------------------------------- gateway binding

@pytest.fixture
def session_ids() -> Iterator[list[str]]:
    ids: list[str] = []
    yield ids
    for client_id in ids:
        forget_session(client_id)


@needs_broker
def test_a_gateway_may_report_only_its_own_meters(db: Database, tmp_path: Path,
                                                   session_ids: list[str]) -> None:
    # given MC001 of GW-A, MC002 of GW-B and MC003 routed through the configured default gateway
    load_meters(db, 3)
    bind(db, "GW-A", "MC001")
    bind(db, "GW-B", "MC002")
    before = (count(db, "import_quarantine"), count(db, "vee_findings"))
    prefix = f"dianfei-test/{uuid.uuid4().hex}"
    thread, box = run_listener(db, BROKER, f"{prefix}/+/readings", tmp_path, PLAINTEXT,
                               max_messages=4, idle_timeout=5.0)
    session_ids.append(box["client_id"])
    at = "2026-03-01T00:00:00+08:00"
    # when GW-A reports its meter, GW-B's meter and an unbound meter in one message; an unknown
    # gateway reports MC001; and GW-B's topic carries a message claiming to be GW-A
    publish(BROKER, f"{prefix}/GW-A/readings",
            [reading("GW-A", "a1", ("MC001", at, "10.00"), ("MC002", at, "999999.00"),
                     ("MC003", at, "999999.00"))])
    publish(BROKER, f"{prefix}/GW-X/readings", [reading("GW-X", "x1", ("MC001", at, "999999.00"))])
    publish(BROKER, f"{prefix}/GW-B/readings", [reading("GW-A", "b1", ("MC001", at, "999999.00"))])
    publish(BROKER, f"{prefix}/GW-B/readings", [reading("GW-B", "b2", ("MC002", at, "20.00"))])
    stats = finish(thread, box)
    # then only each gateway's own meter is stored
    assert stored(db) == [("MC001", "total", 1000), ("MC002", "total", 2000)]
    assert (stats.accepted, stats.rejected, stats.unauthorised) == (2, 0, 4)
    assert (stats.rejected_messages, stats.rejected_items) == (2, 2)
    # and every refusal is on record with its reason; nothing reached the import or VEE
    assert sorted((r["gateway_id"], r["item"] or "", r["reason"]) for r in rejections(tmp_path)) == [
        ("GW-A", "", "gateway_id 'GW-A' in the message is not the gateway of the topic ('GW-B'): "
                     "a gateway reports only as itself"),
        ("GW-A", "readings[1]", "gateway GW-A may not report meter MC002"),
        ("GW-A", "readings[2]", "gateway GW-A may not report meter MC003"),
        ("GW-X", "", "gateway GW-X is not on file (dianfei meters gateway add)"),
    ]
    assert (count(db, "import_quarantine"), count(db, "vee_findings")) == before


# ---------------------------------------------------------------------------- plausibility

def _prepaid_with_history(db: Database) -> None:
    """Prepaid customer P (meter MP, gateway GW-P) who paid 40 yuan (below the 50 yuan warning
    threshold: one step from a cut-off, and evaluated every day), with daily frozen reads of
    10 kWh a day from 20 February to 1 March (1,000 → 1,090 kWh)."""
    from tests.collections.test_collections_e2e import at, pay
    from tests.collections.test_prepay import daily_reads, prepaid

    prepaid(db, ["P"])
    bind(db, "GW-P", "MP")
    daily_reads(db, "MP", {date(2026, 2, 20) + timedelta(days=i): 1000 + 10 * i for i in range(10)})
    pay(db, "P", 4_000, at(date(2026, 2, 28), 15), "T-P-1")


@needs_broker
def test_a_huge_reading_for_a_prepaid_meter_is_held_and_cuts_nobody_off(
        db: Database, tmp_path: Path, session_ids: list[str]) -> None:
    from dianfei.collections.service import events_json, run_day
    from dianfei.metering.vee import service as vee
    from tests.collections.fakes import FakeNotifier, FakeSwitch
    from tests.collections.test_collections_e2e import at

    # given prepaid P with ten days of history and 40 yuan on the account (warned)
    _prepaid_with_history(db)
    switch, notifier = FakeSwitch(), FakeNotifier()
    run_day(db, date(2026, 3, 1), clock=FixedClock(at(date(2026, 3, 1), 9)), switch=switch,
            notifier=notifier)
    topic = f"dianfei-test/{uuid.uuid4().hex}/GW-P/readings"
    # when its own gateway publishes 50,000 kWh on the meter a day later (49,000 kWh in a day)
    thread, box = run_listener(db, BROKER, topic, tmp_path, PLAINTEXT, max_messages=1)
    session_ids.append(box["client_id"])
    publish(BROKER, topic, [reading("GW-P", "huge", ("MP", "2026-03-02T00:00:00+08:00", "50000.00"))])
    stats = finish(thread, box)
    # then the reading is stored as received but held
    assert (stats.accepted, stats.held) == (1, 1)
    held = vee.findings(db, rule="implausible_read")
    assert held.select("meter_id", "ref").rows() == [("MP", "total")]
    assert held["detail"][0] == (
        "reading 50000.00 kWh after 1090.00 kWh at 2026-02-28T16:00:00+00:00 implies 48910.00 kWh "
        "in 24.00 h, more than the meter can register (70 kW × 24.00 h = 1680.00 kWh); held for a "
        "person: not used for a prepaid balance")
    # and the day's run evaluates P on its last plausible read: no notice, no trip
    day2 = run_day(db, date(2026, 3, 2), clock=FixedClock(at(date(2026, 3, 2), 9)), switch=switch,
                   notifier=notifier)
    assert (day2.prepay_accounts, day2.prepay_implausible, day2.prepay_cutoff_notices) == (1, [], 0)
    assert switch.calls == []
    assert not any(e.get("notice") == "cutoff_notice" for e in events_json(db, "P"))
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT read_at, stage, available FROM prepay_state")).one()
    assert (_utc(row[0]), str(row[1]), int(row[2])) == (
        datetime(2026, 2, 28, 16, 0, tzinfo=UTC), "warned", 4_000)

    # when the next day's reading is a normal one (10 kWh more than the last plausible read)
    thread, box = run_listener(db, BROKER, topic, tmp_path, PLAINTEXT, max_messages=1)
    session_ids.append(box["client_id"])
    publish(BROKER, topic, [reading("GW-P", "ok", ("MP", "2026-03-03T00:00:00+08:00", "1110.00"))])
    stats = finish(thread, box)
    # then it is not held and the account is evaluated on it
    assert (stats.accepted, stats.held) == (1, 0)
    day3 = run_day(db, date(2026, 3, 3), clock=FixedClock(at(date(2026, 3, 3), 9)), switch=switch,
                   notifier=notifier)
    assert (day3.prepay_accounts, day3.prepay_cutoff_notices) == (1, 0)
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT read_at, accrued FROM prepay_state")).one()
    assert _utc(row[0]) == datetime(2026, 3, 2, 16, 0, tzinfo=UTC)
    assert 0 < int(row[1]) < 4_000  # 20 kWh since 1 March, priced
    assert vee.findings(db, rule="implausible_read").height == 1
    assert switch.calls == []


def _utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_far_above_the_meters_history_is_held_through_the_database(db: Database) -> None:
    """The history rule on stored reads (the index seeks of plausibility._history): 5 kWh a day
    for ten days, then 80 kWh in a day — possible for the meter, not for this household."""
    from dianfei.metering.service import store_reads
    from dianfei.metering.vee import service as vee
    from dianfei.metering.vee.plausibility import hold_implausible

    load_meters(db, 2)
    days = [datetime(2026, 2, 20, 16, tzinfo=UTC) + timedelta(days=i) for i in range(11)]
    values = {"MC001": [100_000 + 500 * i for i in range(10)] + [104_500 + 8_000],
              "MC002": [100_000 + 500 * i for i in range(10)] + [104_500 + 4_000]}
    rows = [{"meter_id": m, "read_at": at, "register": "total", "value": v, "source": "ami"}
            for m, vs in values.items() for at, v in zip(days, vs, strict=True)]
    frame = pl.DataFrame(rows,
                         schema={"meter_id": pl.String, "read_at": pl.Datetime("us", "UTC"),
                                 "register": pl.String, "value": pl.Int64, "source": pl.String})
    with db.engine.begin() as conn:
        store_reads(conn, frame)
    last = frame.filter(pl.col("read_at") == days[-1]).select("meter_id", "read_at", "register")
    assert hold_implausible(db, CLOCK, last) == 1
    assert hold_implausible(db, CLOCK, last) == 1  # judged again: the same, stored once
    found = vee.findings(db, rule="implausible_read")
    assert found.select("meter_id", "ref").rows() == [("MC001", "total")]
    assert found["detail"][0].startswith(
        "reading 1125.00 kWh after 1045.00 kWh at 2026-03-01T16:00:00+00:00 implies 80.00 kWh, "
        "above 10 × the meter's usual daily usage (5.00 kWh a day in the last 90 days)")


def test_the_listen_command_refuses_plaintext_naming_the_setting(db_env: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIANFEI_MQTT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "dianfei", "meters", "listen", "--mqtt", BROKER, "--topic",
         "ami/+/readings", "--max-seconds", "1"], env={**env, **db_env},
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "[metering.mqtt] tls = false: meter readings would travel unencrypted" in proc.stderr
    assert "allow_plaintext = true (DIANFEI_MQTT_ALLOW_PLAINTEXT)" in proc.stderr
