"""Rule files are read once per process and read again when the configuration changes: the
worker records the change on the audit chain, then forgets what it had read."""

from __future__ import annotations

from pathlib import Path

import pytest

from dianfei.cli import jobs as jobs_cli
from dianfei.collections.plan_policy import POLICY_FILE, plan_policy
from dianfei.core import rules
from dianfei.db.engine import Database

pytestmark = pytest.mark.db


def test_reload_rules_forgets_what_was_read(tmp_path: Path) -> None:
    mine = tmp_path / "plans.toml"
    text = POLICY_FILE.read_text(encoding="utf-8")
    mine.write_text(text, encoding="utf-8")
    before = plan_policy(mine)
    mine.write_text(text.replace("grace_days = 5", "grace_days = 6", 1), encoding="utf-8")
    assert plan_policy(mine) is before  # cached: the edit is not seen yet
    assert rules.reload_rules() >= 1  # every loader imported so far
    after = plan_policy(mine)  # read again: the edit is seen
    assert after is not before and after != before


def test_the_worker_reloads_after_recording_a_change(db: Database, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tariffs = tmp_path / "tariffs"
    tariffs.mkdir()
    (tariffs / "a.toml").write_text('id = "a"\n', encoding="utf-8")
    monkeypatch.setenv("DIANFEI_TARIFF_DIR", str(tariffs))
    reloads: list[int] = []
    real = rules.reload_rules
    monkeypatch.setattr(rules, "reload_rules", lambda: reloads.append(1) or real())
    jobs_cli._record_configuration(db)  # the first snapshot
    jobs_cli._record_configuration(db)  # nothing changed: nothing read again
    assert len(reloads) == 1
    (tariffs / "a.toml").write_text('id = "a"\nnote = "new"\n', encoding="utf-8")
    jobs_cli._record_configuration(db)
    assert len(reloads) == 2
