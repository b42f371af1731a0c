"""Run every benchmark and write docs/benchmarks.md.

    python -m bench [--accounts 1000000] [--backends sqlite,postgresql]

Each benchmark runs in its own process so that its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.machine import describe

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def _run(module: str, *args: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                         check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1_000_000)
    ap.add_argument("--backends", default="sqlite,postgresql")
    a = ap.parse_args()
    rating = _run("bench.rating", "--accounts", str(a.accounts))
    runs = [_run("bench.billrun", "--accounts", str(a.accounts), "--backend", b)
            for b in a.backends.split(",")]
    DOC.write_text(render(rating, runs), encoding="utf-8")
    print(f"wrote {DOC}")


def render(rating: dict[str, object], runs: list[dict[str, object]]) -> str:
    targets = {"sqlite": 30, "postgresql": 45}
    lines = [
        "# Benchmarks",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on: {describe()}.",
        "Reproduce with `make bench` (`python -m bench`). Synthetic utility from `dianfei.sim`",
        "(seed 7): residential, commercial, industrial, large industry and irrigation accounts",
        "with their tariffs (tiers, TOU, two-part, power factor, funds).",
        "",
        "## Rating alone (columnar rater, no database)",
        "",
        "| accounts | bill lines | best of 3 | target | peak RSS |",
        "|---:|---:|---:|---:|---:|",
        f"| {rating['accounts']:,} | {rating['lines']:,} | {rating['best_s']} s | ≤ 2 s | "
        f"{rating['peak_rss_mb']} MB |",
        "",
        "## Whole bill run, persisted (one month)",
        "",
        "Bills, itemised lines and one ledger debit per bill, committed in chunks of 100,000",
        "accounts. The floor writes the same rows raw into an empty copy of the schema (COPY on",
        "PostgreSQL, executemany on SQLite) in one transaction.",
        "",
        "| backend | accounts billed | bill run | read | rate | write | raw write (floor) | "
        "run ÷ floor | target | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        b = r["breakdown_s"]
        assert isinstance(b, dict)
        lines.append(
            f"| {r['backend']} | {r['billed']:,} (+{r['exceptions']:,} exceptions) | "
            f"{r['bill_run_s']} s | {b['read_s']} s | {b['rate_s']} s | {b['write_s']} s | "
            f"{r['raw_write_s']} s | {r['ratio_bill_run_to_raw']}× | "
            f"≤ {targets.get(str(r['backend']), '?')} s, ≤ 2× | {r['peak_rss_mb']} MB |")
    lines += ["", "Rows written per run: " + ", ".join(
        f"{k} {v:,}" for k, v in dict(runs[0]["rows"]).items()) + "." if runs else "", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
