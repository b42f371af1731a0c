"""Risk-intelligence measurement on the synthetic county: theft warnings against the planted
tampering (AUC, precision in the top 1 %) and the next-bill forecast on held-out months (MAPE,
80 % interval coverage).

    python -m bench.insight --customers 20000 --seed 7

Prints one JSON object. Pure functions on the sim's monthly recorded kWh (what each bill
carries), no database: the database path feeds the same functions (tests/risk).

Each as-of month is measured four times: ``before`` with the signals of the monthly kWh alone
(what the scan computed before the night/day and station signals existed), ``night`` adding the
time-of-use energy (the valley share), ``station`` adding the stations' supply (line loss)
instead, and ``after`` with both. The truth
is every planted tampering begun by then, both kinds (``scale`` and the night bypass); the
night bypassers are also counted apart (``night``: how many, and how many of them the top 1 %
holds).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def main() -> None:
    import polars as pl

    from dianfei.core.clock import Period
    from dianfei.risk import anomaly, forecast
    from dianfei.sim import (
        build_utility,
        period_consumption,
        period_tou,
        station_supply,
        tamper_modes,
    )
    from dianfei.tariffs.service import load_catalogue

    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-forecast", action="store_true", help="the theft warnings only")
    args = ap.parse_args()
    start = Period(2025, 1)
    t0 = time.perf_counter()
    u = build_utility(args.customers, seed=args.seed, start=start)
    meters = u.meters.select("meter_id", pl.col("customer_id").alias("account_id"))
    parts, tou_parts, supply_parts, p = [], [], [], start
    for _ in range(24):
        parts.append(period_consumption(u, p).join(meters, on="meter_id").select(
            "account_id", pl.lit(str(p)).alias("period"), "kwh"))
        tou_parts.append(period_tou(u, p).join(meters, on="meter_id").select(
            "account_id", pl.lit(str(p)).alias("period"), "valley", "kwh"))
        supply_parts.append(station_supply(u, p))
        p = p.next()
    history = pl.concat(parts)
    tou = pl.concat(tou_parts)
    supply = pl.concat(supply_parts)
    modes = tamper_modes(u).select(pl.col("customer_id").alias("account_id"), "mode")
    facts = (u.customers.select(pl.col("customer_id").alias("account_id"), "customer_class",
                                "tariff_id", "low_income", "behaviour", "tamper_month",
                                "station_id")
             .join(modes, on="account_id", how="left"))
    out: dict[str, Any] = {"customers": args.customers, "seed": args.seed,
                           "night_bypass": int((modes["mode"] == "night").sum()),
                           "tamper": modes.height,
                           "build_s": round(time.perf_counter() - t0, 2), "theft": []}

    def truth(frame: pl.DataFrame, as_of: Period) -> pl.Series:
        j = frame.select("account_id").join(facts, on="account_id", how="left")
        return ((j["behaviour"] == "tamper")
                & (j["tamper_month"] <= as_of.index() - start.index()).fill_null(False))

    def night_truth(frame: pl.DataFrame, as_of: Period) -> pl.Series:
        j = frame.select("account_id").join(facts, on="account_id", how="left")
        return truth(frame, as_of) & (j["mode"] == "night").fill_null(False)

    variants: dict[str, dict[str, Any]] = {
        "before": {}, "night": {"tou": tou}, "station": {"supply": supply},
        "after": {"tou": tou, "supply": supply}}

    def scan(as_of: Period, variant: str) -> pl.DataFrame:
        extra = variants[variant]
        feats = anomaly.features(history, facts, as_of, **extra)
        return anomaly.score(feats).with_columns(anomaly.isolation_scores(feats))

    for as_of in (Period(2026, 3), Period(2026, 6), Period(2026, 9), Period(2026, 12)):
        row: dict[str, Any] = {"as_of": str(as_of)}
        for label in variants:
            t = time.perf_counter()
            scored = scan(as_of, label)
            took = time.perf_counter() - t
            y = truth(scored, as_of)
            yn = night_truth(scored, as_of)
            part: dict[str, Any] = {"seconds": round(took, 2)}
            for col in ("score", "iforest"):
                m = anomaly.evaluate(scored[col], y)
                k = int(m["top"])
                top = scored.with_columns(yn.alias("_n")).sort(col, descending=True).head(k)
                part[col] = {"auc": round(m["auc"], 3),
                             "precision_top1pct": round(m["precision_top"], 3),
                             "positives": int(m["positives"]), "top": k,
                             "night_in_top": int(top["_n"].sum()),
                             "night_positives": int(yn.sum())}
            # supervised: the top 2 % of the worklist six months earlier were inspected
            earlier = as_of
            for _ in range(6):
                earlier = earlier.prev()
            before = scan(earlier, label)
            visited = before.sort("score", descending=True).head(max(20, before.height // 50))
            sup = anomaly.supervised_scores(
                visited.with_columns(truth(visited, earlier).alias("theft")), scored)
            if sup is not None:
                m = anomaly.evaluate(sup, y)
                part["supervised"] = {"auc": round(m["auc"], 3),
                                      "precision_top1pct": round(m["precision_top"], 3),
                                      "inspections": visited.height}
            row[label] = part
        out["theft"].append(row)
    if not args.no_forecast:
        t = time.perf_counter()
        held_out = [Period(2026, m) for m in range(7, 13)]
        acc = forecast.accuracy(history, facts, load_catalogue(), held_out)
        out["forecast"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in acc.items()}
        out["forecast"]["held_out"] = f"{held_out[0]}..{held_out[-1]}"
        out["forecast"]["seconds"] = round(time.perf_counter() - t, 2)
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
