"""The notify commands as an operator runs them (subprocesses on a fresh database)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from dianfei.core.clock import FixedClock
from dianfei.core.settings import load_settings
from dianfei.db.engine import open_database
from dianfei.notify import service
from tests.factories import Person, load_people
from tests.notify._util import REMINDER, STOP, local

KEY = base64.urlsafe_b64encode(b"k" * 32).decode()


def dianfei(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "dianfei", *args],
                          env={**os.environ, **env, "DIANFEI_SECRET_KEY": KEY},
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"dianfei {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def test_dispatch_and_outbox(db_env: dict[str, str]) -> None:
    # given a stop notice by SMS (no gateway configured) and a reminder letter
    db = open_database(load_settings(db_env))
    load_people(db, [Person("C1")])
    clock = FixedClock(local("2026-11-02 10:00"))
    with db.session() as s:
        service.enqueue(s, key="k:sms", account_id="C1", customer_id="C1", notice="stop_notice",
                        channel="sms", context={**STOP, "account_id": "C1"}, clock=clock)
        service.enqueue(s, key="k:letter", account_id="C1", customer_id="C1", notice="reminder",
                        channel="letter", context={**REMINDER, "account_id": "C1"}, clock=clock)
    db.engine.dispose()
    env = {**db_env, "DIANFEI_NOW": "2026-11-02T10:00:00+08:00"}
    # when one dispatch pass runs
    report = json.loads(dianfei(env, "notify", "dispatch", "--json").stdout)
    # then the SMS is suppressed, its stop notice goes out as a letter, and both letters are PDFs
    assert (report["sent"], report["suppressed"], report["fallback_letters"]) == (2, 1, 1)
    rows = json.loads(dianfei(env, "notify", "outbox", "--account", "C1", "--json").stdout)
    assert [(r["key"], r["channel"], r["status"]) for r in rows] == [
        ("k:sms", "sms", "suppressed"), ("k:letter", "letter", "sent"), ("k:sms#letter", "letter", "sent")]
    assert rows[0]["last_error"] == "sms channel not configured"
    assert rows[0]["queued_at"] == "2026-11-02T10:00:00+08:00"
    assert all(Path(r["provider_ref"]).exists() for r in rows[1:])
    assert Path(rows[1]["provider_ref"]).parent == Path(db_env["DIANFEI_DATA_DIR"]) / "letters"
    assert json.loads(dianfei(env, "notify", "worklist", "--json").stdout) == []
    bad = dianfei(env, "notify", "outbox", "--status", "lost", "--json", check=False)
    assert bad.returncode == 2 and "status must be one of" in bad.stderr


def test_preview_prints_a_sample_and_writes_a_letter(tmp_path: Path) -> None:
    env = {"DIANFEI_DATA_DIR": str(tmp_path)}
    sms = dianfei(env, "notify", "preview", "--notice", "reminder", "--channel", "sms").stdout
    assert "123.45" in sms and "https://pay.example.cn/b/C00000001-202609-1" in sms
    email = dianfei(env, "notify", "preview", "--notice", "stop_notice", "--channel", "email",
                    "--locale", "en").stdout
    assert email.startswith("Subject: [Power Supply Company] supply to account C00000001")
    pdf = tmp_path / "letter.pdf"
    dianfei(env, "notify", "preview", "--notice", "stop_notice", "--channel", "letter", "--out", str(pdf))
    assert pdf.read_bytes().startswith(b"%PDF-")
    bad = dianfei(env, "notify", "preview", "--notice", "hello", "--channel", "sms", check=False)
    assert bad.returncode == 2 and "notice must be one of" in bad.stderr
