"""Load for the customer portal: many signed-in customers opening their bills at once, with wrk.

The target (issue 12): 500 concurrent portal users, p95 ≤ 200 ms on 2 cores. Each wrk
connection is one customer's browser: its own session cookie, cycling through that customer's
pages — the bill list (``/portal/bills``) and the transparent bill of each of their bills
(``/portal/bills/{bill_id}``), as a customer opening a notice's link does.

Sessions are made up front for ``--users`` customers of a database that already holds billed
customers (``dianfei demo``): each gets its portal user (as the first code sign-in creates it)
and a session token, through the security package's services. The load tool is **wrk** (Debian
package ``wrk``), as for the callback benchmark (bench/callbacks_load.py).

Files written to ``--out``: ``requests.txt`` (one line per request: ``path <TAB> cookie``) and
``portal.lua`` (each wrk connection takes its own customer's lines; ``done()`` prints one JSON
line of figures, p95 included).

Run, with DIANFEI_DATABASE_URL / DIANFEI_DATA_DIR naming the demo database::

    .venv/bin/python -m bench.portal_load --users 500 --out var/bench/portal
    .venv/bin/dianfei serve --port 8000 --workers 2 &
    .venv/bin/python -m bench.portal_load --out var/bench/portal --run http://127.0.0.1:8000 \\
        --connections 500 --duration 30s

The last line printed is one JSON object of figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

LUA_SCRIPT = r"""-- wrk script written by bench/portal_load.py: signed-in customers opening their bills.
-- Each connection is one customer (its own cookie), cycling through that customer's pages.
local threads = {}
local users = {}
local order = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path = args[1] or "requests.txt"
  local nthreads = tonumber(args[2] or "1")
  local by_cookie = {}
  local k = 0
  for line in io.lines(path) do
    local p, cookie = line:match("^([^\t]*)\t(.*)$")
    if by_cookie[cookie] == nil then
      by_cookie[cookie] = {}
      if k % nthreads == id then table.insert(order, cookie) end
      k = k + 1
    end
    table.insert(by_cookie[cookie], wrk.format("GET", p, {Cookie = cookie}))
  end
  for _, c in ipairs(order) do table.insert(users, {reqs = by_cookie[c], n = 0}) end
  turn = 0
  think = tonumber(args[3] or "0")
end

function delay()
  -- a person reads the page before the next click: think time, spread 0.5x..1.5x
  if think <= 0 then return 0 end
  return math.floor(think * (0.5 + math.random()))
end

function request()
  -- round-robin over this thread's customers: with as many connections as customers, each
  -- connection keeps (nearly) to one customer
  turn = turn + 1
  local u = users[((turn - 1) % #users) + 1]
  u.n = u.n + 1
  return u.reqs[((u.n - 1) % #u.reqs) + 1]
end

function done(summary, latency, requests)
  local ms = function(us) return us / 1000.0 end
  io.write(string.format(
    '{"requests": %d, "duration_s": %.3f, "non_2xx": %d, "socket_errors": %d, "timeouts": %d, '
    .. '"p50_ms": %.2f, "p90_ms": %.2f, "p95_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f}\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write, summary.errors.timeout,
    ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(95)),
    ms(latency:percentile(99)), ms(latency.max)))
end
"""


def sessions(users: int, *, bills_per_user: int = 3) -> list[str]:
    """Request lines for ``users`` billed customers: their bill list and latest bills."""
    from datetime import UTC, datetime

    from argon2 import PasswordHasher
    from sqlalchemy import text

    from dianfei.billing.service import customer_bills
    from dianfei.db.engine import open_database
    from dianfei.security import users as users_module
    from dianfei.security.otp import issue_token, portal_user
    from dianfei.web.auth import COOKIE

    # the portal users made here get a random password nobody knows (code sign-in only): hashed
    # at argon2id's smallest cost in this process alone, or making 500 of them takes minutes
    quick = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    users_module._hasher = lambda: quick  # type: ignore[assignment]
    db = open_database()
    with db.engine.connect() as conn:
        customers = [str(r[0]) for r in conn.execute(text(
            "SELECT customer_id FROM customers WHERE closed_on IS NULL ORDER BY customer_id "
            "LIMIT :n"), {"n": users})]
    lines: list[str] = []
    now = datetime.now(UTC)
    for cid in customers:
        bills = [b for b in customer_bills(db.engine, cid) if b["status"] != "cancelled"]
        if not bills:
            continue
        with db.session() as s:
            token, _ = issue_token(s, portal_user(s, cid, now), now)
        cookie = f"{COOKIE}={token}"
        lines.append(f"/portal/bills\t{cookie}")
        lines += [f"/portal/bills/{b['bill_id']}\t{cookie}" for b in bills[:bills_per_user]]
    return lines


def run_wrk(out_dir: Path, url: str, *, threads: int, connections: int,
            duration: str, requests: str = "requests.txt",
            think_ms: int = 0) -> dict[str, object]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    (out_dir / "portal.lua").write_text(LUA_SCRIPT, encoding="utf-8")
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}", "--timeout", "10s",
           "-s", str(out_dir / "portal.lua"), url, "--", str(out_dir / requests),
           str(threads), str(think_ms)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    figures = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not figures:
        raise SystemExit(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    out: dict[str, object] = dict(figures[-1])
    seconds = float(str(out["duration_s"]))
    out["rate_per_s"] = round(int(str(out["requests"])) / seconds) if seconds else 0
    out["command"] = " ".join(cmd)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("var/bench/portal"))
    ap.add_argument("--users", type=int, default=500, help="customers to make sessions for")
    ap.add_argument("--bills-per-user", type=int, default=3)
    ap.add_argument("--run", metavar="URL", help="run wrk against this server")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=500)
    ap.add_argument("--duration", default="30s")
    ap.add_argument("--think-ms", type=int, default=0,
                    help="mean pause of each user between pages (0: a closed loop, flat out)")
    ap.add_argument("--requests", default="requests.txt",
                    help="the request file under --out to replay (e.g. a filtered copy)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.run:
        print(json.dumps(run_wrk(args.out, args.run, threads=args.threads,
                                 connections=args.connections, duration=args.duration,
                                 requests=args.requests, think_ms=args.think_ms)))
        return
    lines = sessions(args.users, bills_per_user=args.bills_per_user)
    (args.out / "requests.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (args.out / "portal.lua").write_text(LUA_SCRIPT, encoding="utf-8")
    print(json.dumps({"requests": len(lines), "out": str(args.out)}))


if __name__ == "__main__":
    main()
