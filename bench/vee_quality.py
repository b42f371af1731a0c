"""Precision and recall of VEE's spike and high/low usage rules on synthetic households.

Ten meters × two years of half-hourly data per seed (``dianfei.sim.households``: electric
heating, air conditioning with heat waves, EV charging at night, rooftop PV export, a shop, an
irrigation pump, the Spring Festival and National Day, vacant weeks), each with 20 planted
spikes, 10 faulty high days (× 8, a wrong multiplier) and 10 faulty low days (× 0.02, a stopped
or bypassed meter). Scoring: ``tests/metering/vee/quality.py``.

    python -m bench.vee_quality [--seeds 8]
prints one JSON object: per rule, planted, found, true, false, recalled, precision, recall.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.metering.vee import quality

    total: dict[str, dict[str, int]] = {}
    for seed in range(1, args.seeds + 1):
        history = quality.households(seed)
        for rule, fig in quality.score(history, quality.findings(history)).items():
            t = total.setdefault(rule, {"planted": 0, "found": 0, "true": 0, "false": 0,
                                        "recalled": 0})
            for key in t:
                t[key] += fig[key]
    out = {rule: {**t, "precision": round(t["true"] / t["found"], 4) if t["found"] else 1.0,
                  "recall": round(t["recalled"] / t["planted"], 4) if t["planted"] else 1.0}
           for rule, t in total.items()}
    print(json.dumps({"seeds": args.seeds, "meters_per_seed": 10, "days": 730, **out}))


if __name__ == "__main__":
    main()
