"""The demo's notice channel (``demo.SpoolSender``): one JSON line per notice, whole lines when
the dispatcher sends from several threads, on disk before the send returns."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from dianfei.demo import SpoolSender


def _message(n: int) -> SimpleNamespace:
    rendered = SimpleNamespace(notice="reminder", title=f"账单提醒 {n}", sms_text=f"请缴费 {n}",
                               text=None, paragraphs=())
    return SimpleNamespace(outbox_id=n, key=f"k{n}", account_id=f"A{n:05d}",
                           at=datetime(2025, 3, 1, 9, tzinfo=UTC), rendered=rendered)


def test_lines_are_whole_and_on_disk_before_close(tmp_path: Path) -> None:
    sender = SpoolSender("sms", tmp_path / "spool")
    with ThreadPoolExecutor(max_workers=8) as pool:
        refs = list(pool.map(lambda n: sender.send(_message(n)).provider_ref, range(500)))
    # flushed by each send: readable while the handle is still open
    lines = (tmp_path / "spool" / "sms.jsonl").read_text("utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert sorted(r["outbox_id"] for r in rows) == list(range(500))
    assert refs == [f"spool:{n}" for n in range(500)]
    assert rows[0]["text"].startswith("请缴费")
    sender.close()
    sender.close()  # twice is harmless


def test_a_closed_sender_appends_again(tmp_path: Path) -> None:
    sender = SpoolSender("email", tmp_path)
    sender.send(_message(1))
    sender.close()
    sender.send(_message(2))
    sender.close()
    rows = [json.loads(x) for x in (tmp_path / "email.jsonl").read_text("utf-8").splitlines()]
    assert [r["outbox_id"] for r in rows] == [1, 2]
