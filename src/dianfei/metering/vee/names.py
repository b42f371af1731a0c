"""Names of VEE that the read-only commands need without loading Polars: the rules a finding
can carry, the keys of ``vee report --json`` and the rule of held reads. ``rules``,
``pipeline`` and ``plausibility`` use these (one definition each)."""

from __future__ import annotations

from typing import Final

#: the keys of ``vee report --json`` (interfaces.md), in order
REPORT_KEYS: Final = ("intervals", "missing_intervals", "gap_events", "duplicates",
                      "conflicting_duplicates", "spikes", "zero_runs", "negative", "estimated")

#: the rule of reads held by the plausibility check (stored when a read arrives, not by a run)
HELD_RULE: Final = "implausible_read"


def held_read(meter: str, at: str) -> str:
    """SQL: the register read of ``meter`` (a column) at ``at`` is held — judged implausible and
    not released by a person (``vee review``): no basis for a balance or for judging others."""
    return (f"EXISTS (SELECT 1 FROM vee_findings f WHERE f.rule = '{HELD_RULE}' "
            f"AND f.meter_id = {meter} AND f.ts = {at} AND NOT EXISTS (SELECT 1 FROM "
            "vee_read_reviews v WHERE v.meter_id = f.meter_id AND v.read_at = f.ts "
            "AND v.decision = 'released'))")

#: every rule name a finding can carry, with what it means (docs/vee.md has the details)
RULES: Final = {
    "gap": "a gap event: a maximal run of missing intervals (ts = first missing slot)",
    "off_grid": "an interval whose start is not on the meter's interval grid",
    "negative": "a negative interval value",
    "spike": "an interval far above the meter's usual (median) interval",
    "zero_run": "a day or more of consecutive zero readings (ts = first zero slot)",
    "high_usage": "a complete day far above the meter's usual daily total",
    "low_usage": "a complete day far below the meter's usual daily total",
    "reverse_energy": "energy flowing back (negative intervals) on a business day",
    HELD_RULE: "a register read no meter could have registered (held; never used for a "
               "prepaid balance) — stored by the plausibility check, not by vee run",
    "duplicate": "a repeated interval in one import with the same value as the first",
    "conflicting_duplicate": "a repeated interval in one import with a different value",
    "rollover": "a register read lower than the previous one, explained by the register wrapping",
    "read_backwards": "a register read lower than the previous one that is not a rollover",
    "register_mismatch": "the intervals between two total reads do not add up to their difference",
}
