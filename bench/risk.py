"""Risk benchmarks on the synthetic county's history (no database: the history frames as
``load_history`` returns them, built from the simulator by ``bench.riskdata``).

    python -m bench.risk --what scoring  --accounts 1000000 --months 24
    python -m bench.risk --what training --accounts 200000 --months 13
    python -m bench.risk --what backtest --accounts 30000 --months 6

scoring: features as of a date + model scores (+ reasons for the medium and high bands) of every
account, with a model trained beforehand on a 20,000-account county (not timed). training: the
training frame (features of up to 12 monthly snapshots and their outcomes) and both boosters
with calibration (default 200 trees). backtest: ``risk backtest`` on the last month's issue date
(training included). Building the history is timed apart. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any


def run(what: str, accounts: int, months: int, trees: int) -> dict[str, Any]:
    from bench.riskdata import ISSUE_DELAY, sim_history
    from dianfei.core.clock import Period
    from dianfei.risk.engine import backtest, model_scores, truncate
    from dianfei.risk.features import features
    from dianfei.risk.model import ArrearsModel, TrainConfig, train

    start = Period(2025, 1)
    t0 = time.perf_counter()
    history, _ = sim_history(accounts, months, seed=11, start=start)
    built = time.perf_counter() - t0
    _progress(f"history built in {built:.1f} s")
    last = start
    for _ in range(months - 1):
        last = last.next()
    as_of = last.end_date + ISSUE_DELAY  # the issue date of the last month's bills
    cfg = TrainConfig(trees=trees)
    out: dict[str, Any] = {"what": what, "accounts": accounts, "months": months, "trees": trees,
                           "history_build_s": round(built, 1), "bills": history.bills.height,
                           "clearings": history.clearings.height, "as_of": str(as_of)}
    if what == "scoring":
        small, _ = sim_history(20_000, months, seed=11, start=start)
        model = train(truncate(small, as_of), as_of, cfg)
        assert isinstance(model, ArrearsModel)
        _progress("model of 20,000 accounts trained")
        t0 = time.perf_counter()
        feats = features(truncate(history, as_of), as_of)
        t1 = time.perf_counter()
        _progress(f"features in {t1 - t0:.1f} s")
        scores = model_scores(feats, model, "bench")
        t2 = time.perf_counter()
        out.update({"features_s": round(t1 - t0, 1), "scoring_s": round(t2 - t1, 1),
                    "total_s": round(t2 - t0, 1), "scored": scores.height,
                    "high_band": int((scores["band"] == "high").sum()),
                    "with_reasons": int((scores["reasons_en"] != "").sum())})
    elif what == "training":
        t0 = time.perf_counter()
        model = train(truncate(history, as_of), as_of, cfg)
        assert isinstance(model, ArrearsModel)
        out.update({"training_s": round(time.perf_counter() - t0, 1),
                    "n_train": model.meta["n_train"], "n_valid": model.meta["n_valid"],
                    "valid_auc": model.meta["metrics"]["late"]["auc"]})
    else:
        t0 = time.perf_counter()
        result = backtest(history, as_of, config=cfg)
        out.update({"backtest_s": round(time.perf_counter() - t0, 1),
                    **{k: result[k] for k in ("n", "positives", "auc", "pr_auc", "top_decile_lift",
                                              "scorer")}})
    use = resource.getrusage(resource.RUSAGE_SELF)
    out["peak_rss_gb"] = round(use.ru_maxrss / 2**20, 2)
    # CPU seconds of the whole process (history build included): on a machine shared with other
    # work, what the timed steps would need on a quiet core is at most this
    out["process_cpu_s"] = round(use.ru_utime + use.ru_stime, 1)
    return out


def _progress(what: str) -> None:
    """Where a long run is (on stderr; stdout keeps the one JSON line)."""
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} {what}\n")
    sys.stderr.flush()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--what", choices=("scoring", "training", "backtest"), required=True)
    ap.add_argument("--accounts", type=int, default=30_000)
    ap.add_argument("--months", type=int, default=6)
    ap.add_argument("--trees", type=int, default=200)
    a = ap.parse_args()
    print(json.dumps(run(a.what, a.accounts, a.months, a.trees)))


if __name__ == "__main__":
    main()
