"""A long history of few meters, end to end through the CLI (start-up included).

Ten households × two years of half-hourly data (``dianfei.sim.households``: heating, cooling,
EV charging, PV export, a shop, an irrigation pump, holidays, vacancies; seeded, with gaps, a
zero run and five planted spikes) as the canonical CSV. Timed, each as its own ``dianfei``
process the way a user runs them:

    dianfei import intervals FILE --interval-minutes 30
    dianfei vee run --json
    dianfei vee report --json
    dianfei vee findings --rule spike --json

    python -m bench.vee_history [--meters 10] [--days 730]
prints one JSON object with the timings, the figures and the spikes found vs planted.

``VEE_HISTORY_KEEP=DIR`` keeps the database and store in DIR (which must not exist) to profile
the commands afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: the customer class of each load kind of the generator (the rest are households)
CLASS_OF_KIND = {"shop": "commercial", "irrigation": "agricultural"}


def _population(tmp: Path, ids: list[str], kinds: list[str]) -> tuple[Path, Path]:
    cust = tmp / "customers.csv"
    with cust.open("w", encoding="utf-8") as fh:
        fh.write("customer_id,name,customer_class,region,address,phone,tariff_id,low_income,"
                 "protected,payment_mode,opened_on\n")
        for i, kind in zip(ids, kinds, strict=True):
            cls = CLASS_OF_KIND.get(kind, "residential")
            tariff = {"residential": "cn-zj-residential", "commercial": "cn-general-commercial",
                      "agricultural": "cn-agricultural-irrigation"}[cls]
            fh.write(f"C{i},用户{i},{cls},城关镇,,,{tariff},0,0,postpaid,2020-01-01\n")
    met = tmp / "meters.csv"
    with met.open("w", encoding="utf-8") as fh:
        fh.write("meter_id,customer_id,multiplier,digits,installed_on\n")
        for i in ids:
            fh.write(f"{i},C{i},1,6,2020-01-01\n")
    return cust, met


CPU: dict[str, float] = {}


def _cli(env: dict[str, str], *args: str) -> tuple[float, str]:
    """Run one command; returns its wall time (and records its CPU time, user + system, in
    ``CPU``: on a loaded machine the CPU a command needs says more than the wall clock)."""
    exe = str(Path(sys.executable).with_name("dianfei"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([exe, *args], env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[" ".join(args[:2])] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if out.returncode not in (0,):
        raise SystemExit(f"dianfei {' '.join(args)} exited {out.returncode}: {out.stderr}")
    return elapsed, out.stdout


@contextmanager
def _kept(path: str) -> Iterator[str]:
    Path(path).mkdir(parents=True, exist_ok=False)
    yield path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=10)
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--seed", type=int, default=16)
    args = ap.parse_args()

    from dianfei.sim.households import household_history, write_csv

    keep = os.environ.get("VEE_HISTORY_KEEP")  # a directory to keep, for profiling the commands
    with (tempfile.TemporaryDirectory(prefix="vee-history-") if not keep
          else _kept(keep)) as tmpdir:
        tmp = Path(tmpdir)
        hist = household_history(args.meters, args.days, seed=args.seed)
        csv_path = tmp / "intervals.csv"
        rows = write_csv(hist, str(csv_path))
        env = dict(os.environ, DIANFEI_DATABASE_URL=f"sqlite:///{tmp}/d.db",
                   DIANFEI_DATA_DIR=str(tmp / "data"))
        # as installed: byte-compiled modules are cached (a development shell may forbid it)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        cust, met = _population(tmp, hist.kinds["meter_id"].to_list(),
                                hist.kinds["kind"].to_list())
        _cli(env, "import", "customers", str(cust))
        _cli(env, "import", "meters", str(met))
        steps: dict[str, float] = {}
        CPU.clear()
        steps["import"], out = _cli(env, "import", "intervals", str(csv_path),
                                    "--interval-minutes", "30", "--json")
        imported = json.loads(out)
        steps["vee_run"], _ = _cli(env, "vee", "run", "--json")
        steps["vee_report"], out = _cli(env, "vee", "report", "--json")
        figures = json.loads(out)
        steps["vee_findings_spike"], out = _cli(env, "vee", "findings", "--rule", "spike",
                                                "--json")
        found = json.loads(out)
        files = sum(1 for _ in (tmp / "data" / "intervals").rglob("*.parquet"))
    planted = {(r["meter_id"], r["ts"].isoformat()) for r in hist.spikes.iter_rows(named=True)}
    got = {(f["meter_id"], datetime.fromisoformat(f["ts"]).astimezone(UTC).isoformat())
           for f in found}
    result: dict[str, Any] = {
        "meters": args.meters, "days": args.days, "rows": rows, "import": imported,
        "store_files": files, "seconds": {k: round(v, 3) for k, v in steps.items()},
        "total_seconds": round(sum(steps.values()), 3),
        "cpu_seconds": {k: round(v, 3) for k, v in CPU.items()},
        "total_cpu_seconds": round(sum(CPU.values()), 3),
        "load_average": os.getloadavg()[0], "figures": figures,
        "spikes_found": len(found), "spikes_planted": len(planted),
        "planted_spikes_found": len(planted & got),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
