"""Callbacks under a flood (issue 17, item 1): genuine notifications beside junk, at fixed rates.

The target: 500 genuine callbacks/s (correctly signed by the channel fakes of tests/fakes, half
Alipay, half WeChat Pay) beside 5,000 junk requests/s (bad signatures, oversize bodies, garbage)
against a real ``dianfei serve`` on 2 cores — every genuine one posted exactly once, their p99
≤ 100 ms, the database grown by a bounded amount (the refusal log is capped).

wrk cannot pace two streams at fixed rates, so this is its own **open-loop** generator: each
stream (genuine; junk, split over ``--junk-procs`` processes) is a separate process over raw
HTTP/1.1 keep-alive sockets with pre-built request bytes — by default ``bench/flood_stream.c``
(epoll, compiled with ``cc`` into the work directory; ``--generator c``), or an asyncio loop
(uvloop when installed; ``--generator python``). On one 2-core machine the generator's CPU is
taken from the server it measures: the Python streams took 0.4–0.9 of the two cores at 500 +
5,000 requests/s, the C ones 0.16–0.2. Request *i* of a stream is scheduled at
``start + i / rate`` whatever happened before; it waits for an idle connection if all are
busy, and its latency is measured **from the scheduled time** to the last byte of the answer
(no coordinated omission: a stalled server shows up as latency, not as fewer requests). Each
process also reports how late it was at sending (``lag``): when the generator itself cannot keep
up, the report says so instead of hiding it.

Sources. The guard throttles per source address (payments/refusal_log.py), so where the junk comes
from matters. Loopback answers on all of 127.0.0.0/8: genuine requests come from 127.0.0.1, junk
from ``--junk-sources`` addresses 127.0.0.2… (0 = from 127.0.0.1 as well: the attacker behind the
same proxy as the channel, whom the guard can never throttle — the worst case).

Run (everything — a fresh database, the server, both streams, the checks)::

    .venv/bin/python -m bench.callbacks_flood --backend postgresql --duration 20 \\
        --genuine-rate 500 --junk-rate 5000 --junk-sources 8 --workers 2

Checked afterwards: ``correct`` — no genuine (channel, transaction id) twice in ``payments``,
no junk in ``payments`` or ``payment_inbox``, every genuine request answered "received" (Alipay
``success``, WeChat Pay 204) really posted, ``dianfei ledger check`` passes (exit 1 otherwise,
whatever the load); ``target_met`` — also every genuine one answered and posted, p99 ≤ 100 ms.
The refusal log's rows and bytes and the database's growth are reported. The last line printed
is one JSON object of figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import pickle
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ALIPAY_PATH = "/api/v1/payments/notify/alipay"
WECHATPAY_PATH = "/api/v1/payments/notify/wechatpay"
PG_URL = os.environ.get("DIANFEI_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
#: the personal-data key the synthetic customers are sealed with (tests/factories.py's)
BENCH_KEY = base64.urlsafe_b64encode(b"k" * 32).decode()


# -- request bytes ------------------------------------------------------------------------------
def http_request(path: str, headers: dict[str, str], body: bytes, *,
                 declared_length: int | None = None) -> bytes:
    """One HTTP/1.1 keep-alive POST as bytes (``declared_length`` may lie about the body)."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body) if declared_length is None else declared_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


@dataclass(frozen=True)
class Genuine:
    channel: str
    transaction_id: str
    request: bytes


def genuine_requests(orders: Sequence[Any], *, now: datetime, seed: int,
                     out_dir: Path) -> tuple[list[Genuine], dict[str, str]]:
    """One correctly signed notification per order (the fakes' keys; no duplicates: each must
    post exactly once) and the server's channel environment."""
    from tests.fakes.alipay import FakeAlipay
    from tests.fakes.wechatpay import FakeWechatPay

    alipay, wechat = FakeAlipay(), FakeWechatPay()
    env = {**alipay.env(out_dir / "alipay_public.pem"),
           **wechat.env(out_dir / "wechatpay_platform_public.pem"),
           # signed before the run starts: allow an hour for WeChat Pay's replay window
           "DIANFEI_WECHATPAY_REPLAY_WINDOW_SECONDS": "3600"}
    out: list[Genuine] = []
    for i, o in enumerate(orders):
        paid_at = now - timedelta(seconds=len(orders) - i)
        if o.channel == "alipay":
            tx = f"2024{seed:02d}{i:022d}"
            body, ct = alipay.notification(o.order_no, tx, o.amount, paid_at=paid_at)
            out.append(Genuine("alipay", tx, http_request(ALIPAY_PATH, {"Content-Type": ct}, body)))
        else:
            tx = f"42{seed:02d}{i:024d}"
            headers, body = wechat.notification(o.order_no, tx, o.amount, "SUCCESS", paid_at,
                                                timestamp=now)
            headers["Content-Type"] = "application/json"
            out.append(Genuine("wechatpay", tx, http_request(WECHATPAY_PATH, headers, body)))
    return out, env


FORM = "application/x-www-form-urlencoded"

#: the junk mix: kind → share of the junk stream
JUNK_MIX = {"alipay_forged": 0.25, "wechat_forged": 0.25, "oversize": 0.10, "garbage": 0.40}


def junk_requests(n_distinct: int, *, seed: int, now: datetime,
                  oversize: int = 100_000) -> list[tuple[str, bytes]]:
    """``n_distinct`` junk requests of the kinds of :data:`JUNK_MIX`, shuffled (the stream cycles
    through them): notifications signed with an attacker's key (a full RSA verification each;
    they claim real-looking order numbers), bodies over the 64 KiB limit with a true
    Content-Length, and garbage (random bytes, forms without a signature, broken JSON)."""
    from tests.fakes.alipay import FakeAlipay
    from tests.fakes.wechatpay import FakeWechatPay

    rng = random.Random(seed)
    alipay, wechat = FakeAlipay(), FakeWechatPay()
    out: list[tuple[str, bytes]] = []
    kinds = list(JUNK_MIX)
    weights = [JUNK_MIX[k] for k in kinds]
    big = b"x=" + b"A" * (oversize - 2)
    for i in range(n_distinct):
        kind = rng.choices(kinds, weights)[0]
        if kind == "alipay_forged":
            body, ct = alipay.forged(f"JK{seed:02d}{i:010d}", f"2099{i:024d}", rng.randint(100, 90_000))
            out.append((kind, http_request(ALIPAY_PATH, {"Content-Type": ct}, body)))
        elif kind == "wechat_forged":
            headers, body = wechat.forged(f"JK{seed:02d}{i:010d}", f"4299{i:022d}",
                                          rng.randint(100, 90_000), timestamp=now)
            headers["Content-Type"] = "application/json"
            out.append((kind, http_request(WECHATPAY_PATH, headers, body)))
        elif kind == "oversize":
            path = rng.choice((ALIPAY_PATH, WECHATPAY_PATH))
            out.append((kind, http_request(path, {"Content-Type": "application/x-www-form-urlencoded"}, big)))
        else:
            choice = rng.randrange(4)
            if choice == 0:
                body = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2000)))
                out.append((kind, http_request(rng.choice((ALIPAY_PATH, WECHATPAY_PATH)),
                                               {"Content-Type": "application/octet-stream"}, body)))
            elif choice == 1:  # a form with a trade_no holding a NUL byte, no signature
                body = (f"out_trade_no=LD{i}&trade_no=2024%00{i}&total_amount=1.00"
                        "&trade_status=TRADE_SUCCESS").encode()
                out.append((kind, http_request(ALIPAY_PATH, {"Content-Type": FORM}, body)))
            elif choice == 2:
                body = b'{"id": "' + str(i).encode() + b'", "resource": {"ciphertext": "AAAA"'
                out.append((kind, http_request(WECHATPAY_PATH, {"Content-Type": "application/json",
                                                                "Wechatpay-Serial": "X" * 40,
                                                                "Wechatpay-Signature": "bm9wZQ==",
                                                                "Wechatpay-Timestamp": "1",
                                                                "Wechatpay-Nonce": "n"}, body)))
            else:
                body = rng.randbytes(rng.randint(10, 300)).hex().encode()
                out.append((kind, http_request(ALIPAY_PATH, {"Content-Type": "text/plain"}, body)))
    return out


# -- the open-loop stream -----------------------------------------------------------------------
async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    close = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"content-length":
            length = int(value)
        elif lname == b"connection" and value.strip().lower() == b"close":
            close = True
    body = await reader.readexactly(length) if length else b""
    return status, body, close


async def _stream(host: str, port: int, requests: list[bytes], rate: float, count: int,
                  start_at: float, connections: int, binds: list[str], timeout: float = 10.0,
                  ) -> dict[str, Any]:
    """Send ``count`` requests (cycling through ``requests``) at ``rate``/s from ``start_at``
    (wall clock); returns per-request (index, scheduled, latency, status, body[:16]) and the lag."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    results: list[tuple[int, float, int, bytes]] = []  # index, latency s, status, body head
    errors = 0
    reconnects = 0

    async def connect(bind: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        r, w = await asyncio.open_connection(host, port, local_addr=(bind, 0), limit=1 << 20)
        w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return r, w

    async def worker(bind: str) -> None:
        nonlocal errors, reconnects
        reader, writer = await connect(bind)
        while True:
            item = await queue.get()
            if item is None:
                writer.close()
                return
            i, scheduled = item
            try:
                writer.write(requests[i % len(requests)])
                status, body, close = await asyncio.wait_for(_read_response(reader), timeout)
                results.append((i, loop.time() - scheduled, status, body[:16]))
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
                    TimeoutError):  # no answer within the timeout: counted, a new connection
                errors += 1
                results.append((i, loop.time() - scheduled, 0, b""))
                close = True
            if close:
                writer.close()
                reconnects += 1
                reader, writer = await connect(bind)

    workers = [asyncio.create_task(worker(binds[k % len(binds)])) for k in range(connections)]
    await asyncio.sleep(0.2)  # connections open before the clock starts
    t0 = loop.time() + (start_at - time.time())
    lags: list[float] = []
    i = 0
    while i < count:
        now = loop.time()
        due = min(count, int((now - t0) * rate) + 1) if now >= t0 else 0
        while i < due:
            scheduled = t0 + i / rate
            lags.append(now - scheduled)
            queue.put_nowait((i, scheduled))
            i += 1
        if i < count:
            await asyncio.sleep(max(0.0, t0 + i / rate - loop.time()))
    for _ in workers:
        queue.put_nowait(None)
    sent_s = loop.time() - t0
    _, pending = await asyncio.wait(workers, timeout=timeout + 5)
    for task in pending:  # stuck connecting: what they held is counted below as unanswered
        task.cancel()
    unanswered = count - len(results)
    lags.sort()
    return {"results": results, "errors": errors + unanswered, "cpu_s": time.process_time(),
            "reconnects": reconnects, "sent_s": sent_s,
            "lag_p99_ms": 1000 * lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
            "lag_max_ms": 1000 * lags[-1] if lags else 0.0}


def run_stream(args: argparse.Namespace) -> None:
    """One stream process (``--stream FILE``): writes its results next to FILE."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    requests: list[bytes] = pickle.loads(Path(args.stream).read_bytes())
    binds = args.bind.split(",")
    out = asyncio.run(_stream(args.host, args.port, requests, args.rate, args.count, args.start_at,
                              args.connections, binds, args.timeout))
    Path(args.result).write_bytes(pickle.dumps(out))


def _length_prefixed(requests: list[bytes]) -> bytes:
    """The C junk engine's request file: u32 n, then n × (u32 length, bytes), little-endian."""
    out = [len(requests).to_bytes(4, "little")]
    for r in requests:
        out += [len(r).to_bytes(4, "little"), r]
    return b"".join(out)


def _build_generator(work: Path) -> Path:
    """bench/flood_stream.c compiled into the work directory (cc -O2): the same open-loop
    streams at about a tenth of the Python streams' CPU — on one machine, CPU the generator
    would otherwise take from the server it measures (docs/benchmarks.md)."""
    binary = work / "flood_stream"
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("--generator c needs a C compiler (cc); or use --generator python")
    subprocess.run([cc, "-O2", "-o", str(binary), str(ROOT / "bench" / "flood_stream.c")], check=True)
    return binary


def _stream_result(path: Path, c_generator: bool) -> dict[str, Any]:
    """A stream process's result: the Python stream's pickle, or the C generator's text read
    into the same dict (results: index, latency s, status, the body's first 16 bytes)."""
    if not c_generator:
        return dict(pickle.loads(path.read_bytes()))
    lines = path.read_text().splitlines()
    sent_s, cpu_s, lag_p99, lag_max, errors, reconnects = lines[0].split()
    results = []
    for line in lines[1:]:
        i, latency, status, *body = line.split(" ")
        results.append((int(i), float(latency), int(status), bytes.fromhex(body[0] if body else "")))
    return {"results": results, "errors": int(errors), "cpu_s": float(cpu_s),
            "reconnects": int(reconnects), "sent_s": float(sent_s),
            "lag_p99_ms": float(lag_p99), "lag_max_ms": float(lag_max)}


# -- the run ------------------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def _cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group ``pgid`` (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, …
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _by_second(results: list[tuple[int, float, int, bytes]], rate: float) -> list[float]:
    buckets: dict[int, list[float]] = {}
    for i, latency, _, _ in results:
        buckets.setdefault(int(i / rate), []).append(1000 * latency)
    return [round(_pct(sorted(v), 0.99), 1) for _, v in sorted(buckets.items())]


def _database(backend: str, work: Path) -> tuple[str, str | None]:
    """A fresh database: (url, PostgreSQL database name to drop afterwards)."""
    if backend == "sqlite":
        return f"sqlite:///{work / 'flood.db'}", None
    import psycopg

    name = f"dianfei_flood_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_URL.rsplit("/", 1)[0] + "/" + name, name


def _drop(name: str | None) -> None:
    if name is None:
        return
    import psycopg

    with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _size(engine: Any, url: str) -> int:
    from sqlalchemy import text

    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())


def _table_size(engine: Any, table: str) -> int | None:
    from sqlalchemy import text

    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": table}).scalar_one())


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import urllib.request

    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"the server on port {port} exited ({proc.returncode})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("dianfei serve did not answer /healthz")


#: the front door of deploy/nginx/dianfei.conf for the callbacks, on plain HTTP for the bench:
#: the channels' addresses (here the genuine stream's 127.0.0.1) pass unthrottled, every other
#: source is limited to ``rate`` requests a second (a burst of ``burst``) and answered 429 by
#: nginx itself; bodies above 64 KiB are refused 413 before they are read
NGINX_CONF = """
daemon off;
user root;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log error;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    fastcgi_temp_path {work}/nginx-fastcgi;
    uwsgi_temp_path {work}/nginx-uwsgi;
    scgi_temp_path {work}/nginx-scgi;
    geo $callback_source_trusted {{
        default 0;
        127.0.0.1/32 1;
    }}
    map $callback_source_trusted $callback_limit_key {{
        1 "";
        0 $binary_remote_addr;
    }}
    limit_req_zone $callback_limit_key zone=callbacks:10m rate={rate}r/s;
    limit_req_status 429;
    upstream dianfei {{
        server 127.0.0.1:{upstream};
        keepalive 128;
    }}
    server {{
        listen {port} backlog=4096;
        location /api/v1/payments/notify/ {{
            client_max_body_size 64k;
            limit_req zone=callbacks burst={burst} nodelay;
            proxy_pass http://dianfei;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
        location / {{
            proxy_pass http://dianfei;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def _nginx(work: Path, port: int, upstream: int, rate: int, burst: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(exe).exists():
        raise SystemExit("--front nginx needs nginx (apt-get install nginx)")
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, port=port, upstream=upstream, rate=rate,
                                      burst=burst))
    proc = subprocess.Popen([exe, "-c", str(conf), "-p", str(work)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=(work / "nginx.out").open("wb"))
    return proc


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))  # tests.fakes, tests.factories
    from sqlalchemy import text
    from tests.factories import Person, load_people

    from bench.callbacks_load import orders_frame, plan
    from dianfei.core.settings import load_settings
    from dianfei.db.bulk import write_frame
    from dianfei.db.engine import open_database

    work = Path(args.out or tempfile.mkdtemp(prefix="dianfei-flood-"))
    work.mkdir(parents=True, exist_ok=True)
    url, pg_name = _database(args.backend, work)
    env = {**os.environ, "DIANFEI_DATABASE_URL": url, "DIANFEI_DATA_DIR": str(work / "var"),
           "DIANFEI_SECRET_KEY": BENCH_KEY}
    figures: dict[str, Any] = {"backend": args.backend, "workers": args.workers,
                               "genuine_rate": args.genuine_rate, "junk_rate": args.junk_rate,
                               "duration_s": args.duration, "junk_sources": args.junk_sources,
                               "junk_procs": args.junk_procs}
    server: subprocess.Popen[bytes] | None = None
    front: subprocess.Popen[bytes] | None = None
    try:
        t = time.perf_counter()
        db = open_database(load_settings({k: env[k] for k in ("DIANFEI_DATABASE_URL", "DIANFEI_DATA_DIR",
                                                               "DIANFEI_SECRET_KEY")}))
        accounts = [f"F{i:06d}" for i in range(args.accounts)]
        load_people(db, [Person(a) for a in accounts])
        n_measured = int(args.genuine_rate * args.duration)
        n_genuine = args.warmup + n_measured
        orders = plan(n_genuine, accounts, seed=args.seed)
        now = datetime.now(UTC)
        with db.engine.begin() as conn:
            write_frame(conn, "payment_orders", orders_frame(orders, created_at=now))
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
        genuine, channel_env = genuine_requests(orders, now=now, seed=args.seed, out_dir=work)
        junk = junk_requests(args.junk_distinct, seed=args.seed, now=now)
        figures["prepare_s"] = round(time.perf_counter() - t, 1)
        env.update(channel_env)
        env["DIANFEI_LOG_FORMAT"] = "text"
        if args.front == "nginx":  # dianfei throttles by the address nginx forwards
            env["DIANFEI_CALLBACK_TRUSTED_PROXIES"] = "127.0.0.1"
        # the first --warmup notifications warm both server processes (imports on first use,
        # prepared statements, the writer's connection) before the clock starts, as a server
        # that has been up for a while is; they are posted and checked like the others
        (work / "warmup.pickle").write_bytes(pickle.dumps([g.request for g in genuine[:args.warmup]]))
        (work / "genuine.pickle").write_bytes(pickle.dumps([g.request for g in genuine[args.warmup:]]))
        (work / "junk.pickle").write_bytes(pickle.dumps([r for _, r in junk]))
        for name in ("warmup", "genuine", "junk"):  # the same requests for the C generator
            requests = pickle.loads((work / f"{name}.pickle").read_bytes())
            (work / f"{name}.requests").write_bytes(_length_prefixed(requests))
        stream_bin = _build_generator(work) if args.generator == "c" else None
        figures["generator"] = args.generator
        size_before = _size(db.engine, url)

        log_path = work / "serve.log"
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "dianfei"), "serve", "--port", str(args.port),
             "--workers", str(args.workers), "--no-jobs"],
            env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        _wait_ready(args.port, server)
        time.sleep(1.0)  # every worker up (each answers /healthz on its own)
        target = args.port
        if args.front == "nginx":
            target = args.port + 1
            front = _nginx(work, target, args.port, args.front_rate, args.front_burst)
            _wait_ready(target, front)
            figures["front"] = {"nginx": True, "rate_per_source": args.front_rate,
                                "burst": args.front_burst}
        if args.profile:
            time.sleep(args.profile_delay)

        junk_binds = ([f"127.0.0.{2 + k}" for k in range(args.junk_sources)]
                      if args.junk_sources > 0 else ["127.0.0.1"])
        procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

        def spawn(role: str, file: Path, rate: float, count: int, conns: int, binds: list[str],
                  start_at: float) -> None:
            result = work / f"{role}.result"
            cmd = [sys.executable, "-m", "bench.callbacks_flood", "--stream", str(file),
                   "--result", str(result), "--rate", str(rate), "--count", str(count),
                   "--start-at", repr(start_at), "--connections", str(conns), "--port", str(target),
                   "--bind", ",".join(binds)]
            path = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            env_k = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
            if stream_bin is not None:
                cmd = [str(stream_bin), str(file.with_suffix(".requests")), "127.0.0.1", str(target),
                       repr(rate), str(count), repr(start_at), str(conns), ",".join(binds),
                       repr(args.timeout), str(result)]
            procs.append((role, subprocess.Popen(cmd, cwd=ROOT, env=env_k), result))

        if args.warmup:
            warm_at = time.time() + 1.5
            spawn("warmup", work / "warmup.pickle", 100.0, args.warmup, 8, ["127.0.0.1"], warm_at)
            if args.warmup_junk and args.junk_rate > 0:
                # a server that has been up a while has also refused the odd scanner's junk: its
                # refusal paths (signature checks that fail, the refusal log's writer) are warm
                spawn("warmup_junk", work / "junk.pickle", 100.0, args.warmup_junk, 8,
                      junk_binds, warm_at)
            for _, p, _ in procs:
                p.wait(timeout=120)
            warm = _stream_result(procs[0][2], stream_bin is not None)
            procs.clear()
            figures["warmup_not_received"] = sum(1 for r in warm["results"] if r[2] not in (200, 204))
        start_at = time.time() + 3.0
        server_cpu = _cpu_seconds(server.pid)
        front_cpu = _cpu_seconds(front.pid) if front is not None else 0.0
        if n_measured:
            spawn("genuine", work / "genuine.pickle", args.genuine_rate, n_measured,
                  args.genuine_connections, ["127.0.0.1"], start_at)
        per_proc = args.junk_rate / args.junk_procs
        for k in range(args.junk_procs if args.junk_rate > 0 else 0):
            binds = junk_binds[k::args.junk_procs] or junk_binds
            spawn(f"junk{k}", work / "junk.pickle", per_proc, int(per_proc * args.duration),
                  args.junk_connections, binds, start_at)
        perf = None
        if args.profile:
            # collapsed stacks (text: grep-able, and what flamegraph tools read)
            perf = subprocess.Popen(["py-spy", "record", "--format", "raw", "-o",
                                     str(work / "profile.txt"), "--pid",
                                     str(server.pid), "--subprocesses", "-d", str(int(args.duration))])
        for _, p, _ in procs:
            p.wait(timeout=args.duration + 180)
        if perf is not None:
            perf.wait()
        server_cpu = _cpu_seconds(server.pid) - server_cpu
        front_cpu = (_cpu_seconds(front.pid) - front_cpu) if front is not None else 0.0
        streams = {role: _stream_result(path, stream_bin is not None) for role, p, path in procs}
        # CPU seconds per second of load: what the server and the generator took of the 2 cores
        # (the rest went to PostgreSQL and to whatever else ran on the machine)
        span = max(s["sent_s"] for s in streams.values())
        figures["cpu_cores_used"] = {
            "server": round(server_cpu / span, 2),
            "front": round(front_cpu / span, 2),
            "generator": round(sum(s["cpu_s"] for s in streams.values()) / span, 2),
            "load_average_1m": round(os.getloadavg()[0], 1),
            "server_ms_per_request": round(1000 * server_cpu / max(1, sum(len(s["results"])
                                                                          for s in streams.values())), 3)}

        # -- figures --------------------------------------------------------------------------
        g = streams.get("genuine") or {"results": [], "errors": 0, "sent_s": 0.0, "lag_p99_ms": 0.0}
        ok_answers = {b"success", b""}
        bad = [(i, st, b) for i, _, st, b in g["results"]
               if not ((st == 200 and b in ok_answers) or st == 204)]
        # the genuine ones the server said it posted (their index in the measured stream)
        received = {i for i, _, st, b in g["results"] if (st == 200 and b in ok_answers) or st == 204}
        lat = sorted(1000 * r[1] for r in g["results"])
        figures["genuine"] = {
            "sent": n_measured, "answered": len(g["results"]),
            "not_received": len(bad) + n_measured - len(g["results"]), "errors": g["errors"],
            "rate_reached_per_s": round(len(g["results"]) / max(g["sent_s"], 1e-9)),
            "p50_ms": round(_pct(lat, 0.50), 1), "p95_ms": round(_pct(lat, 0.95), 1),
            "p99_ms": round(_pct(lat, 0.99), 1), "max_ms": round(lat[-1], 1) if lat else None,
            "send_lag_p99_ms": round(g["lag_p99_ms"], 1),
            # p99 of each second of the run (by scheduled time): a slow start or a stall shows
            "p99_by_second_ms": _by_second(g["results"], args.genuine_rate) if n_measured else []}
        if bad:
            figures["genuine"]["first_refusals"] = [(i, st, b.decode("utf-8", "replace"))
                                                    for i, st, b in bad[:5]]
        jstatus: dict[int, int] = {}
        jlat: list[float] = []
        jsent = 0
        jsec = 0.0
        jlag = 0.0
        jerr = 0
        for role, s in streams.items():
            if not role.startswith("junk"):
                continue
            jsent += len(s["results"])
            jsec = max(jsec, s["sent_s"])
            jlag = max(jlag, s["lag_p99_ms"])
            jerr += s["errors"]
            for _, latency, st, _ in s["results"]:
                jstatus[st] = jstatus.get(st, 0) + 1
                jlat.append(1000 * latency)
        jlat.sort()
        figures["junk"] = {"sent": jsent, "rate_reached_per_s": round(jsent / max(jsec, 1e-9)),
                           "status": {str(k): v for k, v in sorted(jstatus.items())}, "errors": jerr,
                           "p50_ms": round(_pct(jlat, 0.5), 1), "p99_ms": round(_pct(jlat, 0.99), 1),
                           "send_lag_p99_ms": round(jlag, 1)}
        figures["junk_mix"] = {k: sum(1 for kind, _ in junk if kind == k) for k in JUNK_MIX}
    finally:
        if front is not None and front.poll() is None:
            os.killpg(front.pid, signal.SIGQUIT)  # nginx's graceful stop
            front.wait(timeout=30)
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)  # uvicorn's graceful stop: the refusal log flushes
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)

    try:
        # -- checks -------------------------------------------------------------------------------
        sent = {(x.channel, x.transaction_id) for x in genuine[:args.warmup + figures["genuine"]["sent"]]}
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT channel, transaction_id, count(*) FROM payments "
                                     "WHERE source = 'callback' GROUP BY channel, transaction_id")).all()
            posted = {(c, t): n for c, t, n in rows}
            inbox_rows = conn.execute(text("SELECT count(*) FROM payment_inbox")).scalar_one()
            refusal_rows, refusal_count = conn.execute(
                text("SELECT count(*), coalesce(sum(count), 0) FROM payment_refusal_log")).one()
            entries = conn.execute(
                text("SELECT count(*) FROM ledger_entries WHERE kind = 'payment'")).scalar_one()
        twice = sum(1 for n in posted.values() if n > 1)
        missing = len(sent - set(posted))
        extra = len(set(posted) - sent)
        check = subprocess.run([str(Path(sys.executable).parent / "dianfei"), "ledger", "check"],
                               env=env, capture_output=True, text=True, check=False)
        size_after = _size(db.engine, url)
        figures["checks"] = {
            "posted": len(posted), "posted_twice": twice, "genuine_missing": missing,
            "junk_posted": extra, "payment_inbox_rows": int(inbox_rows),
            "ledger_payment_entries": int(entries),
            "ledger_check": check.returncode == 0,
            "refusal_log_rows": int(refusal_rows), "refusals_counted": int(refusal_count)}
        figures["database"] = {"before_bytes": size_before, "after_bytes": size_after,
                               "grew_bytes": size_after - size_before,
                               "refusal_log_bytes": _table_size(db.engine, "payment_refusal_log")}
        unposted = sum(1 for i in received
                       if (genuine[args.warmup + i].channel, genuine[args.warmup + i].transaction_id)
                       not in posted)
        figures["checks"]["answered_received_but_not_posted"] = unposted
        # correct: nothing twice, nothing from junk, every "received" answer true, the ledger
        # sound — whatever the load; the target adds every genuine one answered, p99 ≤ 100 ms
        figures["correct"] = (twice == 0 and extra == 0 and unposted == 0
                              and check.returncode == 0 and int(inbox_rows) == len(posted))
        figures["target_met"] = (figures["correct"] and missing == 0
                                 and figures["genuine"]["not_received"] == 0
                                 and figures["genuine"]["p99_ms"] <= 100.0)
        if check.returncode != 0:
            figures["ledger_check_output"] = (check.stdout + check.stderr)[-2000:]
    finally:
        db.engine.dispose()
        if not args.keep:
            _drop(pg_name)
            if args.out is None:
                shutil.rmtree(work, ignore_errors=True)
        else:
            figures["kept"] = {"url": url, "work": str(work)}
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--workers", type=int, default=2, help="dianfei serve --workers")
    ap.add_argument("--port", type=int, default=8917)
    ap.add_argument("--front", choices=("none", "nginx"), default="none",
                    help="nginx in front (port + 1), as deploy/nginx/dianfei.conf: channels' "
                    "addresses unthrottled, other sources limited per address")
    ap.add_argument("--front-rate", type=int, default=20, help="nginx: requests/s per other source")
    ap.add_argument("--front-burst", type=int, default=10, help="as deploy/nginx/dianfei.conf")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    ap.add_argument("--genuine-rate", type=float, default=500.0)
    ap.add_argument("--junk-rate", type=float, default=5000.0)
    ap.add_argument("--junk-sources", type=int, default=8,
                    help="junk source addresses 127.0.0.2…; 0: junk from the genuine source too")
    ap.add_argument("--junk-procs", type=int, default=2, help="processes sharing the junk stream")
    ap.add_argument("--junk-distinct", type=int, default=2000, help="distinct junk requests (cycled)")
    ap.add_argument("--genuine-connections", type=int, default=64)
    ap.add_argument("--generator", choices=("c", "python"), default="c",
                    help="the streams' generator: c (bench/flood_stream.c, built with cc) or python")
    ap.add_argument("--junk-connections", type=int, default=64, help="per junk process")
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=300, help="genuine notifications sent first, unmeasured")
    ap.add_argument("--warmup-junk", type=int, default=100,
                    help="junk requests sent beside the warm-up from the junk sources, unmeasured")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--out", type=Path, default=None, help="keep the work files here")
    ap.add_argument("--keep", action="store_true", help="keep the database (and work files)")
    ap.add_argument("--profile", action="store_true", help="py-spy the server during the load")
    ap.add_argument("--profile-delay", type=float, default=0.0)
    # one stream process (internal)
    ap.add_argument("--stream", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--connections", type=int, default=64, help=argparse.SUPPRESS)
    ap.add_argument("--bind", default="127.0.0.1", help=argparse.SUPPRESS)
    ap.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=float, default=10.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stream:
        run_stream(args)
        return
    figures = run(args)
    print(json.dumps(figures))
    if not figures.get("correct", False):
        raise SystemExit(1)  # a double posting, posted junk or an untrue answer: never acceptable


if __name__ == "__main__":
    main()
