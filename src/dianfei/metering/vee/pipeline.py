"""The whole VEE pass as one pure function of frames: figures, findings and estimates.

The service feeds it from the interval store and the database; the benchmark feeds it straight
from Parquet files. Nothing here reads or writes storage, so every counting definition can be
tested with hand-made frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import polars as pl

from dianfei.metering.vee import estimate, names, rules
from dianfei.metering.vee.config import VeeConfig

#: the keys of ``vee report --json`` (interfaces.md), in order
REPORT_KEYS: Final = names.REPORT_KEYS

DUPLICATE_SCHEMA: Final = pl.Schema({
    "batch_id": pl.String(), "meter_id": pl.String(), "ts": pl.Datetime("us", "UTC"),
    "wh": pl.Int64(), "first_wh": pl.Int64(),
})
READ_SCHEMA: Final = pl.Schema({
    "meter_id": pl.String(), "read_at": pl.Datetime("us", "UTC"), "register": pl.String(),
    "value": pl.Int64(), "source": pl.String(),
})
METER_SCHEMA: Final = pl.Schema({"meter_id": pl.String(), "digits": pl.Int64()})

#: a window's context: meter ids → (rows before, first row after), see :func:`run`
Context = Callable[[pl.Series], tuple[pl.DataFrame, pl.DataFrame]]


@dataclass(frozen=True)
class VeeResult:
    #: the figures of interfaces.md except ``estimated`` (stored estimates are the service's)
    counts: dict[str, int]
    findings: pl.DataFrame
    estimates: pl.DataFrame
    #: the metered intervals with step, on_grid, slot, day and tod (for the TOU split)
    prepared: pl.DataFrame


def empty_duplicates() -> pl.LazyFrame:
    return pl.LazyFrame(schema=DUPLICATE_SCHEMA)


def empty_reads() -> pl.LazyFrame:
    return pl.LazyFrame(schema=READ_SCHEMA)


def empty_meters() -> pl.LazyFrame:
    return pl.LazyFrame(schema=METER_SCHEMA)


def run(intervals: pl.LazyFrame, cfg: VeeConfig, tz: str, *,
        duplicates: pl.LazyFrame | None = None, reads: pl.LazyFrame | None = None,
        meters: pl.LazyFrame | None = None, with_findings: bool = True,
        with_estimates: bool = True, profile: pl.LazyFrame | None = None,
        context: Context | None = None) -> VeeResult:
    """Validate and estimate. ``intervals``: meter_id, ts, minutes, wh (one row per meter and ts).
    ``duplicates``: batch_id, meter_id, ts, wh, first_wh. ``reads``: register reads;
    ``meters``: meter_id, digits (for rollover) and optionally meter_class (the customer class,
    for the spike settings of the class); ``profile``: the meters' kept statistics over a longer
    history (:data:`rules.PROFILE_SCHEMA`), for the spike and usage rules; ``context``: for a
    window of days, called with the window's meter ids, returns each meter's rows just before
    and just after the window (:data:`rules.CONTEXT_SCHEMA`), so that a gap or a run of zeros
    crossing the window's edge is found with its true start, as a run over the whole history
    finds it. The figures stay those of the window's own rows (interfaces: ``--from/--to``)."""
    dups = duplicates if duplicates is not None else empty_duplicates()
    reads_df = (reads if reads is not None else empty_reads()).collect()
    meters_lf = meters if meters is not None else empty_meters()

    # the two materialised stages every rule shares (a sort at most once)
    prepared_df = rules.prepare(intervals.select("meter_id", "ts", "minutes", "wh"), tz)
    slots_df = rules.slotted(prepared_df)
    prepared, slots = prepared_df.lazy(), slots_df.lazy()
    gap_events = rules.gaps(slots)
    all_runs = rules.zero_runs(slots)
    zero_runs = rules.long_zero_runs(all_runs)
    # the events findings and estimates are made of: with the window's edges when there is context
    found_gaps, found_runs = gap_events, zero_runs
    if context is not None and slots_df.height:
        edge = rules.edges(slots_df, *context(
            slots_df.filter(pl.col("prev_slot").is_null())["meter_id"])).lazy()
        found_gaps = pl.concat([gap_events, rules.edge_gaps(edge)], how="vertical")
        found_runs = rules.long_zero_runs(rules.carried_zero_runs(all_runs, edge))
    spike_rows = rules.spikes(prepared, cfg, rules.spike_settings(meters_lf.collect(), cfg),
                              profile)

    plans: list[pl.LazyFrame] = [
        prepared.select(pl.len().alias("intervals"),
                        (pl.col("wh") < 0).sum().alias("negative")),
        gap_events.select(pl.col("gap_slots").sum().alias("missing_intervals"),
                          pl.len().alias("gap_events")),
        zero_runs.select(pl.len().alias("zero_runs")),
        dups.select(pl.len().alias("duplicates"),
                    (pl.col("wh") != pl.col("first_wh")).sum().alias("conflicting_duplicates")),
    ]
    finding_plans: list[pl.LazyFrame] = []
    if with_findings:
        finding_plans = [
            rules.gap_findings(found_gaps), rules.off_grid(prepared), rules.negative(prepared),
            spike_rows, rules.zero_run_findings(found_runs),
            rules.usage_deviation(prepared, cfg, tz, profile), rules.reverse_energy(prepared, tz),
            rules.duplicate_findings(dups),
        ]
        if reads_df.height:  # the register rules, when there are reads to judge
            finding_plans += [rules.register_backwards(reads_df.lazy(), meters_lf),
                              rules.register_mismatch(slots, reads_df.lazy(), meters_lf, cfg)]
    else:
        plans.append(spike_rows.select(pl.len().alias("spikes")))
    estimate_plan = (estimate.estimate(found_gaps, slots.select("meter_id", "meter_key", "ts", "wh", "tod"),
                                      cfg, tz)
                     if with_estimates else pl.LazyFrame(schema=estimate.ESTIMATE_SCHEMA))
    frames = pl.collect_all([*plans, pl.concat(finding_plans) if finding_plans
                             else pl.LazyFrame(schema=rules.FINDING_SCHEMA), estimate_plan])
    counts: dict[str, int] = {}
    for frame in frames[:len(plans)]:
        for name, value in frame.row(0, named=True).items():
            counts[name] = int(value or 0)
    findings = frames[len(plans)]
    if with_findings:
        counts["spikes"] = findings.filter(pl.col("rule") == "spike").height
    return VeeResult(counts=counts,
                     findings=findings.sort("rule", "meter_id", "ts", "ref"),
                     estimates=frames[-1].sort("meter_id", "ts"), prepared=prepared_df)
