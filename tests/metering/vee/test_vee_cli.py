"""The vee commands as an operator runs them (a subprocess per command, a fresh database)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dianfei.core.settings import load_settings
from dianfei.db.engine import open_database
from tests.factories import Person, load_people
from tests.metering.vee.conftest import NOW, kwh_text
from tests.metering.vee.helpers import slot

KEYS = ["intervals", "missing_intervals", "gap_events", "duplicates", "conflicting_duplicates",
        "spikes", "zero_runs", "negative", "estimated"]


def dianfei(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "dianfei", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"dianfei {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def test_report_creates_the_schema_on_an_empty_database(db_env: dict[str, str]) -> None:
    out = json.loads(dianfei(db_env, "vee", "report", "--json").stdout)
    assert list(out) == KEYS and set(out.values()) == {0}


def test_run_report_findings_edit_and_read_rate(db_env: dict[str, str]) -> None:
    ingest = pytest.importorskip("dianfei.metering.ingest",
                                 reason="needs the interval store's import path (metering.ingest)")
    import polars as pl

    db = open_database(load_settings(db_env))
    try:
        load_people(db, [Person("C1")])
        values = [100, None, 300] + [0] * 96 + [40] * 20 + [13_000]
        rows = [("MC1", slot(k), kwh_text(v)) for k, v in enumerate(values) if v is not None]
        ingest.ingest_intervals(db, pl.DataFrame(rows, schema={
            "meter_id": pl.String, "ts": pl.Datetime("us", "UTC"), "kwh": pl.String}, orient="row"),
            interval_minutes=15, origin="test", clock=NOW)
    finally:
        db.engine.dispose()

    first = json.loads(dianfei(db_env, "vee", "run", "--json").stdout)
    second = json.loads(dianfei(db_env, "vee", "run", "--json").stdout)
    assert first["estimates_added"] == 1 and second["estimates_added"] == 0
    assert second["findings_added"] == 0
    report = json.loads(dianfei(db_env, "vee", "report", "--json").stdout)
    assert report == {"intervals": 119, "missing_intervals": 1, "gap_events": 1, "duplicates": 0,
                      "conflicting_duplicates": 0, "spikes": 1, "zero_runs": 1, "negative": 0,
                      "estimated": 1}

    spikes = json.loads(dianfei(db_env, "vee", "findings", "--rule", "spike", "--json").stdout)
    assert spikes == [{"rule": "spike", "meter_id": "MC1", "ts": "2026-03-03T05:45:00+08:00",
                       "value": "13.000", "detail": spikes[0]["detail"]}]
    assert "above the 50.0 kW" in spikes[0]["detail"]
    every = json.loads(dianfei(db_env, "vee", "findings", "--json").stdout)
    assert {f["rule"] for f in every} == {"gap", "zero_run", "spike"}
    assert all(set(f) >= {"rule", "meter_id", "ts", "value", "detail"} for f in every)
    bad_rule = dianfei(db_env, "vee", "findings", "--rule", "nonsense", "--json", check=False)
    assert bad_rule.returncode == 2 and "unknown rule" in bad_rule.stderr

    no_reason = dianfei(db_env, "vee", "edit", "--meter", "MC1", "--ts", "2026-03-02T00:15:00+08:00",
                        "--kwh", "0.2", "--reason", "", check=False)
    assert no_reason.returncode == 2 and "reason" in no_reason.stderr
    edit = json.loads(dianfei(db_env, "vee", "edit", "--meter", "MC1", "--ts",
                              "2026-03-02T00:15:00+08:00", "--kwh", "0.21", "--reason",
                              "site visit", "--user", "wang", "--json").stdout)
    assert (edit["old"], edit["old_source"], edit["new"], edit["user"]) == ("0.200", "estimated",
                                                                           "0.210", "wang")
    # the figures still count the slot as missing: an edit is not a metered value
    assert json.loads(dianfei(db_env, "vee", "report", "--json").stdout)["missing_intervals"] == 1

    rate = json.loads(dianfei(db_env, "vee", "read-rate", "--date", "2026-03-02", "--json").stdout)
    assert rate == {"date": "2026-03-02", "meters": 1, "succeeded": 0, "failed": 1, "rate": 0.0}
    failed = json.loads(dianfei(db_env, "vee", "read-rate", "--date", "2026-03-02", "--failed",
                                "--json").stdout)
    assert failed == [{"date": "2026-03-02", "meter_id": "MC1", "region": "R1", "station": "S1",
                       "reason": "incomplete_intervals",
                       "detail": "95 of 96 intervals and no daily frozen read"}]
    by_region = json.loads(dianfei(db_env, "vee", "read-rate", "--date", "2026-03-03", "--by",
                                   "region", "--json").stdout)
    assert by_region == [{"date": "2026-03-03", "region": "R1", "meters": 1, "succeeded": 0,
                          "failed": 1, "rate": 0.0}]
