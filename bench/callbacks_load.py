"""Load for the payment callback endpoints: pre-signed Alipay and WeChat Pay notifications for wrk.

The target (issue 4): ≥ 1,000 signed callbacks/s through ``dianfei serve`` on PostgreSQL, p99 ≤
100 ms on 2 cores, 10% duplicates, zero double postings. Signing is the expensive part of making a
callback, so every request is signed up front by the channel fakes (tests/fakes), half Alipay,
half WeChat Pay, 10% of them exact re-deliveries of another (the same bytes, the same headers,
shuffled so some arrive concurrently with their original).

The load tool is **wrk** (Debian package ``wrk``; LuaJIT scripting): a C event loop that keeps up
with thousands of requests per second on one core, reports latency percentiles, and its Lua hook
lets each request carry its own body and headers. (vegeta and oha are not packaged in Debian 12;
locust's Python workers would need more CPU than the server under test.)

Files written to ``--out``:
- ``requests.txt`` — one request per line: ``path <TAB> header: value <US> header: value … <TAB> body``;
- ``callbacks.lua`` — the wrk script: each thread replays its share of the lines (cycling if the
  run outlasts them); ``done()`` prints one JSON line (requests, non-2xx, latency percentiles);
- ``alipay_public.pem``, ``wechatpay_platform_public.pem`` and ``channels.env`` — the settings the
  server must run with (``set -a; . channels.env; set +a`` before ``dianfei serve``);
- ``orders.parquet`` — the matching ``payment_orders`` rows (see :func:`orders_frame`).

Run, against a server already serving a database that holds the accounts::

    .venv/bin/python -m bench.callbacks_load --n 40000 --accounts-from-db --load-orders \\
        --out var/bench/callbacks
    set -a; . var/bench/callbacks/channels.env; set +a; .venv/bin/dianfei serve --port 8000 &
    .venv/bin/python -m bench.callbacks_load --out var/bench/callbacks --run http://127.0.0.1:8000 \\
        --threads 2 --connections 32 --duration 15s [--skip N]

``--skip N`` starts after the first N lines, so a further run on the same file posts fresh
payments instead of replaying what an earlier run already posted. Each generation needs its own
``--seed`` when its orders go into the same database (order numbers and transaction ids carry it),
and the server must run with that generation's ``channels.env`` (the fakes' keys are per process).
WeChat Pay requests are signed with the generation time: use them within the hour.

The last line printed is one JSON object of figures.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

ALIPAY_PATH = "/api/v1/payments/notify/alipay"
WECHATPAY_PATH = "/api/v1/payments/notify/wechatpay"
_US = "\x1f"  # separates headers on a line of requests.txt

LUA_SCRIPT = r"""-- wrk script written by bench/callbacks_load.py: replays pre-signed payment callbacks.
-- Each thread cycles through its share (every nth line of requests.txt); generate enough lines
-- for the run (rate x duration) or the cycling adds duplicates beyond the planned 10%.
local threads = {}
local requests = {}
local counter = 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path = args[1] or "requests.txt"
  local nthreads = tonumber(args[2] or "1")
  local skip = tonumber(args[3] or "0")
  local i = 0
  for line in io.lines(path) do
    if i >= skip and i % nthreads == id then
      local p, hdrs, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
      local headers = {}
      for pair in hdrs:gmatch("[^\031]+") do
        local k, v = pair:match("^([^:]+):%s*(.*)$")
        headers[k] = v
      end
      table.insert(requests, wrk.format("POST", p, headers, body))
    end
    i = i + 1
  end
end

function request()
  counter = counter + 1
  return requests[((counter - 1) % #requests) + 1]
end

function done(summary, latency, requests)
  local ms = function(us) return us / 1000.0 end
  io.write(string.format(
    '{"requests": %d, "duration_s": %.3f, "non_2xx": %d, "socket_errors": %d, "timeouts": %d, '
    .. '"p50_ms": %.2f, "p90_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f}\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write, summary.errors.timeout,
    ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)), ms(latency.max)))
end
"""


@dataclass(frozen=True)
class OrderSpec:
    """One payment order the load pays: its number, account, channel and amount in fen."""

    order_no: str
    account_id: str
    channel: str
    amount: int


def plan(n_orders: int, account_ids: Sequence[str], *, seed: int = 7) -> list[OrderSpec]:
    """``n_orders`` orders, alternately Alipay and WeChat Pay, round-robin over the accounts."""
    if not account_ids:
        raise ValueError("at least one account id is needed")
    rng = random.Random(seed)
    out = []
    for i in range(n_orders):
        channel = "alipay" if i % 2 == 0 else "wechatpay"
        out.append(OrderSpec(order_no=f"LD{seed:02d}{i:010d}", account_id=account_ids[i % len(account_ids)],
                             channel=channel, amount=rng.randint(1_000, 50_000)))
    return out


def orders_frame(orders: Sequence[OrderSpec], *, created_at: datetime,
                 ttl: timedelta = timedelta(hours=2)) -> pl.DataFrame:
    """The ``payment_orders`` rows (columns of payments/models.py) for bulk loading with
    ``dianfei.db.bulk.write_frame(conn, "payment_orders", frame)``."""
    import polars as pl

    n = len(orders)
    return pl.DataFrame(
        {
            "order_no": [o.order_no for o in orders],
            "account_id": [o.account_id for o in orders],
            "channel": [o.channel for o in orders],
            "amount": [o.amount for o in orders],
            "status": ["open"] * n,
            "created_at": [created_at] * n,
            "expires_at": [created_at + ttl] * n,
        },
        schema={"order_no": pl.String, "account_id": pl.String, "channel": pl.String, "amount": pl.Int64,
                "status": pl.String, "created_at": pl.Datetime("us", "UTC"),
                "expires_at": pl.Datetime("us", "UTC")},
    )


def signed_requests(orders: Sequence[OrderSpec], *, now: datetime, duplicates: float = 0.10,
                    seed: int = 7, out_dir: Path) -> tuple[list[str], dict[str, str]]:
    """One request line per order plus ``duplicates`` × total exact re-deliveries, shuffled;
    returns the lines and the server's channel environment (key files written to ``out_dir``)."""
    from tests.fakes.alipay import FakeAlipay
    from tests.fakes.wechatpay import FakeWechatPay

    alipay, wechat = FakeAlipay(), FakeWechatPay()
    env = {**alipay.env(out_dir / "alipay_public.pem"),
           **wechat.env(out_dir / "wechatpay_platform_public.pem"),
           # the requests are signed before the run starts: allow an hour for the replay window
           "DIANFEI_WECHATPAY_REPLAY_WINDOW_SECONDS": "3600"}
    lines: list[str] = []
    for i, o in enumerate(orders):
        paid_at = now - timedelta(seconds=len(orders) - i)
        if o.channel == "alipay":
            body, ct = alipay.notification(o.order_no, f"2024{seed:02d}{i:022d}", o.amount, paid_at=paid_at)
            headers = {"Content-Type": ct}
            path = ALIPAY_PATH
        else:
            headers, body = wechat.notification(o.order_no, f"42{seed:02d}{i:024d}", o.amount, "SUCCESS",
                                                paid_at, timestamp=now)
            headers["Content-Type"] = "application/json"
            path = WECHATPAY_PATH
        text = body.decode("utf-8")
        assert "\t" not in text and "\n" not in text
        lines.append(f"{path}\t{_US.join(f'{k}: {v}' for k, v in headers.items())}\t{text}")
    rng = random.Random(seed)
    n_dup = round(len(lines) * duplicates / (1 - duplicates))  # duplicates are 10% of all requests
    lines = lines + [rng.choice(lines) for _ in range(n_dup)]
    rng.shuffle(lines)
    return lines, env


def generate(out_dir: Path, orders: Sequence[OrderSpec], *, now: datetime, duplicates: float = 0.10,
             seed: int = 7) -> dict[str, object]:
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    lines, env = signed_requests(orders, now=now, duplicates=duplicates, seed=seed, out_dir=out_dir)
    sign_s = time.perf_counter() - t0
    (out_dir / "requests.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out_dir / "callbacks.lua").write_text(LUA_SCRIPT, encoding="utf-8")
    (out_dir / "channels.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
    orders_frame(orders, created_at=now).write_parquet(out_dir / "orders.parquet")
    return {"orders": len(orders), "requests": len(lines), "duplicates": len(lines) - len(orders),
            "sign_rate_per_s": round(len(lines) / sign_s), "out": str(out_dir)}


def run_wrk(out_dir: Path, url: str, *, threads: int = 2, connections: int = 64,
            duration: str = "30s", skip: int = 0) -> dict[str, object]:
    """Run wrk once over the pre-signed requests; returns the figures its done() hook printed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}", "--timeout", "5s",
           "-s", str(out_dir / "callbacks.lua"), url, "--", str(out_dir / "requests.txt"), str(threads),
           str(skip)]
    # the script as this version writes it (a request file may come from an older run)
    (out_dir / "callbacks.lua").write_text(LUA_SCRIPT, encoding="utf-8")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    figures = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not figures:
        raise SystemExit(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    out: dict[str, object] = dict(figures[-1])
    duration_s = float(out["duration_s"])  # type: ignore[arg-type]
    out["rate_per_s"] = round(int(out["requests"]) / duration_s) if duration_s else 0  # type: ignore[call-overload]
    lines = sum(1 for _ in (out_dir / "requests.txt").open(encoding="utf-8"))
    # more requests than lines means the run cycled: duplicates above the planned share
    out["cycled"] = int(out["requests"]) > lines - skip  # type: ignore[call-overload]
    out["command"] = " ".join(cmd)
    return out


def _accounts_from_db(limit: int) -> list[str]:
    from sqlalchemy import text

    from dianfei.db.engine import open_database

    db = open_database()
    with db.engine.connect() as conn:
        sql = text("SELECT account_id FROM accounts ORDER BY account_id LIMIT :n")
        rows = conn.execute(sql, {"n": limit})
        return [r[0] for r in rows]


def _load_orders(out_dir: Path) -> int:
    import polars as pl

    from dianfei.db.bulk import write_frame
    from dianfei.db.engine import open_database

    frame = pl.read_parquet(out_dir / "orders.parquet")
    db = open_database()
    with db.engine.begin() as conn:
        n = write_frame(conn, "payment_orders", frame)
    if db.engine.dialect.name == "postgresql":
        # fresh planner statistics after the bulk loads (the demo's and these orders), as
        # autovacuum would give a long-running database; stale ones pick sequential scans
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    return n


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("var/bench/callbacks"))
    ap.add_argument("--n", type=int, default=40_000, help="payment orders (requests = n / 0.9)")
    ap.add_argument("--duplicates", type=float, default=0.10)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--accounts-from-db", action="store_true",
                    help="pay the accounts of the configured database (DIANFEI_DATABASE_URL)")
    ap.add_argument("--load-orders", action="store_true",
                    help="bulk-load orders.parquet into payment_orders")
    ap.add_argument("--run", metavar="URL", help="run wrk against a serving dianfei (skips generation)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--duration", default="30s")
    ap.add_argument("--skip", type=int, default=0,
                    help="start after this many lines (a further run on the same file posts new payments)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.fakes
    if args.run:
        print(json.dumps(run_wrk(args.out, args.run, threads=args.threads, connections=args.connections,
                                 duration=args.duration, skip=args.skip)))
        return
    accounts = (_accounts_from_db(args.n) if args.accounts_from_db
                else [f"A{i:08d}" for i in range(1, min(args.n, 20_000) + 1)])
    orders = plan(args.n, accounts, seed=args.seed)
    figures = generate(args.out, orders, now=datetime.now(UTC), duplicates=args.duplicates, seed=args.seed)
    if args.load_orders:
        figures["orders_loaded"] = _load_orders(args.out)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
