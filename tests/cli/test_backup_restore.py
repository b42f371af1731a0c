"""`dianfei backup` / `dianfei restore`: a restore into an empty database gives the same exports,
the same interval data and an intact audit chain; anything wrong is refused and changes nothing."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cli.test_cli_demo import dianfei
from tests.conftest import fresh_database_env
from tests.snapshots import built_once

pytestmark = pytest.mark.db

EXPORTS = ("bills", "payments", "ledger", "customers")


@pytest.fixture
def other_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A second installation: its own empty database and data directory, the same keyring."""
    (tmp_path / "other").mkdir()
    with fresh_database_env(tmp_path / "other") as env:
        yield env


@pytest.fixture
def filled(db_env: dict[str, str], tmp_path: Path,
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A demo with collections, interval data and a VEE run: built once per test process."""
    def build(env: dict[str, str]) -> None:
        dianfei(env, "demo", "--customers", "40", "--months", "2", "--seed", "9", "--no-serve")
        rows = "".join(f"M00000001,2025-03-0{d}T{h:02d}:00:00+08:00,0.{h:02d}\n"
                       for d in range(1, 4) for h in range(24))
        iv = tmp_path / "iv.csv"
        iv.write_text("meter_id,ts,kwh\n" + rows)
        dianfei(env, "import", "intervals", str(iv), "--interval-minutes", "60")
        dianfei(env, "vee", "run")

    built_once("filled-40x2", db_env, tmp_path_factory, build)
    return db_env


def _exports(env: dict[str, str], where: Path) -> dict[str, bytes]:
    where.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in EXPORTS:
        path = where / f"{name}.csv"
        dianfei(env, "export", name, "--out", str(path))
        out[name] = path.read_bytes()
    out["vee"] = dianfei(env, "vee", "report", "--json").stdout.encode()
    return out


def test_restore_gives_the_same_exports_and_an_intact_chain(
        filled: dict[str, str], other_env: dict[str, str], tmp_path: Path) -> None:
    before = _exports(filled, tmp_path / "before")
    archive = tmp_path / "b.tar.gz"
    made = json.loads(dianfei(filled, "backup", "--out", str(archive), "--json").stdout)
    assert made["members"] >= 2  # the database and at least one interval file
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names[-1] == "manifest.json"
    assert any(n.startswith("data/intervals/") for n in names)
    assert not any(n.startswith(("data/keys", "data/secret.key")) for n in names)

    out = json.loads(dianfei(other_env, "restore", str(archive), "--json").stdout)
    assert out["audit_head"] == made["audit_head"] and out["migrate_needed"] is False
    verify = dianfei(other_env, "audit", "verify")
    assert "intact" in verify.stdout
    assert _exports(other_env, tmp_path / "after") == before
    # a backup never overwrites a file
    again = dianfei(filled, "backup", "--out", str(archive), check=False)
    assert again.returncode != 0 and "exists already" in again.stderr


def test_a_restore_into_a_database_in_use_is_refused(filled: dict[str, str],
                                                     tmp_path: Path) -> None:
    archive = tmp_path / "b.tar.gz"
    dianfei(filled, "backup", "--out", str(archive))
    before = _exports(filled, tmp_path / "before")
    proc = dianfei(filled, "restore", str(archive), check=False)
    assert proc.returncode != 0 and "is not empty" in proc.stderr
    assert _exports(filled, tmp_path / "after") == before


def _rewrite(src: Path, dst: Path, change: dict[str, bytes]) -> None:
    with tarfile.open(src) as tin, tarfile.open(dst, "w:gz") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()  # type: ignore[union-attr]
            data = change.get(m.name, data)
            info = tarfile.TarInfo(m.name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))


def test_damaged_altered_or_newer_backups_are_refused(
        filled: dict[str, str], other_env: dict[str, str], tmp_path: Path) -> None:
    archive = tmp_path / "b.tar.gz"
    dianfei(filled, "backup", "--out", str(archive))
    raw = archive.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        db_name = manifest["database"]
        db_bytes = tar.extractfile(db_name).read()  # type: ignore[union-attr]
    altered = tmp_path / "altered.tar.gz"
    _rewrite(archive, altered, {db_name: db_bytes[:-1] + bytes([db_bytes[-1] ^ 1])})
    newer = tmp_path / "newer.tar.gz"
    _rewrite(archive, newer, {"manifest.json": json.dumps(
        {**manifest, "schema_revision": "9999"}).encode()})
    cases = {cut: "damaged or truncated", altered: "does not match its checksum",
             newer: "newer dianfei", tmp_path / "nothing.tar.gz": "no such backup file"}
    for path, message in cases.items():
        proc = dianfei(other_env, "restore", str(path), check=False)
        assert proc.returncode != 0 and message in proc.stderr, (path, proc.stderr)
    # nothing was restored by any of them: the good backup still goes in
    dianfei(other_env, "restore", str(archive))
    assert "intact" in dianfei(other_env, "audit", "verify").stdout
