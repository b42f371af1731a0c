"""A full disk is reported, not corrupting: the embedded database on a small file system (a
tmpfs) fills up in the middle of the demo's first bill run; the command exits 3 with one clear
line, and once there is room again the database is intact (integrity check, audit chain,
ledger) and holds everything stored before the failed step."""

from __future__ import annotations

import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cli.test_cli_demo import dianfei
from tests.conftest import FACTORY_KEY


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = Path("/tmp") / f"dianfei-full-{uuid.uuid4().hex[:8]}"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a small file system here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)
        where.rmdir()


def test_a_full_disk_is_reported_and_corrupts_nothing(small_disk: Path) -> None:
    env = {"DIANFEI_DATABASE_URL": f"sqlite:///{small_disk / 'dianfei.db'}",
           "DIANFEI_DATA_DIR": str(small_disk / "var"), "DIANFEI_SECRET_KEY": FACTORY_KEY}
    full = dianfei(env, "demo", "--customers", "3000", "--months", "2", "--no-serve",
                   "--no-collections", check=False)
    assert full.returncode == 3, full.stderr[-2000:]
    assert "disk is full" in full.stderr and "Traceback" not in full.stderr
    subprocess.run(["mount", "-o", "remount,size=300m", str(small_disk)], check=True)
    conn = sqlite3.connect(small_disk / "dianfei.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        customers = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
    finally:
        conn.close()
    assert customers == 3000  # the step before the failed one is all there
    assert dianfei(env, "audit", "verify").returncode == 0
    assert dianfei(env, "ledger", "check").returncode == 0
