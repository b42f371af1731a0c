"""`dianfei worker` and `dianfei jobs …` with the real job kinds, as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli_demo import dianfei
from tests.payments.statements.builders import alipay_csv

pytestmark = pytest.mark.db

SCHEDULE = """
[[job]]
name = "collections"
kind = "collections_day"
every = "day"
at = "09:00"
args = { no_meter_control = true }

[[job]]
name = "reconcile-alipay"
kind = "reconcile"
every = "day"
at = "11:00"
max_attempts = 2
args = { channel = "alipay" }
"""


def test_worker_runs_the_calendar_and_waits_for_a_late_statement(
        db_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "schedule.toml").write_text(SCHEDULE)
    (tmp_path / "dianfei.toml").write_text(f'[jobs]\nschedule = "{tmp_path / "schedule.toml"}"\n')
    env = {**db_env, "DIANFEI_CONFIG": str(tmp_path / "dianfei.toml"),
           "DIANFEI_NOW": "2024-03-06T12:00:00+08:00"}
    shown = json.loads(dianfei(env, "jobs", "schedule", "--json").stdout)
    assert [j["name"] for j in shown] == ["collections", "reconcile-alipay"]

    # the statement of the 5th has not arrived: collections run, reconciliation waits
    first = dianfei(env, "worker", "--once", "--json", check=False)
    assert first.returncode == 1
    ran = {r["job"]: r for r in json.loads(first.stdout)["ran"]}
    assert ran["collections"]["status"] == "done"
    assert ran["collections"]["result"]["day"] == "2024-03-06"
    assert ran["reconcile-alipay"]["status"] == "queued"
    assert "no alipay statement for 2024-03-05 yet" in ran["reconcile-alipay"]["error"]
    waiting = json.loads(dianfei(env, "jobs", "list", "--status", "queued", "--json").stdout)
    assert [w["job"] for w in waiting] == ["reconcile-alipay"] and waiting[0]["next_attempt_at"]

    # it arrives; after the backoff the worker reconciles it
    folder = Path(db_env["DIANFEI_DATA_DIR"]) / "statements" / "alipay"
    folder.mkdir(parents=True)
    (folder / "2024-03-05.csv").write_bytes(alipay_csv([]))
    later = {**env, "DIANFEI_NOW": "2024-03-06T12:05:00+08:00"}
    second = json.loads(dianfei(later, "worker", "--once", "--json").stdout)
    assert [(r["job"], r["status"]) for r in second["ran"]] == [("reconcile-alipay", "done")]
    assert second["ran"][0]["result"]["day"] == "2024-03-05"

    # nothing is run twice: another pass finds nothing to do
    assert json.loads(dianfei(later, "worker", "--once", "--json").stdout)["ran"] == []

    # a day run by hand is recorded with who asked for it
    manual = json.loads(dianfei(later, "jobs", "run", "collections", "--for", "2024-03-01",
                                "--user", "wang", "--json").stdout)
    assert manual["status"] == "done" and manual["result"]["day"] == "2024-03-01"
    history = json.loads(dianfei(later, "jobs", "list", "--job", "collections", "--json").stdout)
    assert {h["triggered_by"] for h in history} == {"schedule", "user:wang"}


def test_a_wrong_calendar_stops_the_worker_naming_the_field(db_env: dict[str, str],
                                                            tmp_path: Path) -> None:
    (tmp_path / "schedule.toml").write_text(
        '[[job]]\nname = "bills"\nkind = "bill_run"\nevery = "month"\nday_of_month = 30\n'
        'at = "06:00"\n')
    (tmp_path / "dianfei.toml").write_text(f'[jobs]\nschedule = "{tmp_path / "schedule.toml"}"\n')
    proc = dianfei({**db_env, "DIANFEI_CONFIG": str(tmp_path / "dianfei.toml")}, "worker",
                   "--once", check=False)
    assert proc.returncode == 2
    assert "job bills: day_of_month must be a whole number 1..28" in proc.stderr
