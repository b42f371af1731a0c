"""The ``dianfei import`` command as an operator runs it, and the CSV importer under random
input: it never crashes, and every data row is accounted for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dianfei.core.errors import ValidationError
from dianfei.db.engine import Database
from tests.metering.imports.conftest import CUSTOMERS, METERS, run, write


def dianfei(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dianfei", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def test_cli_json_counts_and_clear_errors(db_env: dict[str, str], tmp_path: Path) -> None:
    cust = write(tmp_path, "customers.csv", CUSTOMERS, encoding="gbk")
    meters = write(tmp_path, "meters.csv", METERS)
    reads = write(tmp_path, "reads.csv", "meter_id,read_at,register,value,source\n"
                  "M001,2026-03-01T00:00:00+08:00,total,10,ami\nM001,2026-03-01,total,1,ami\n")
    proc = dianfei(db_env, "import", "customers", str(cust), "--encoding", "gbk", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"accepted": 3, "rejected": 0, "duplicates": 0}
    assert json.loads(dianfei(db_env, "import", "meters", str(meters), "--json").stdout) == {
        "accepted": 3, "rejected": 0, "duplicates": 0}
    assert json.loads(dianfei(db_env, "import", "reads", str(reads), "--json").stdout) == {
        "accepted": 1, "rejected": 1, "duplicates": 0}
    assert json.loads(dianfei(db_env, "import", "reads", str(reads), "--json").stdout) == {
        "accepted": 0, "rejected": 1, "duplicates": 1}
    # the GBK file read as UTF-8: one clear line, exit 2, no traceback
    proc = dianfei(db_env, "import", "customers", str(cust), "--json")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and "line 2, byte" in proc.stderr
    assert "Traceback" not in proc.stderr
    iv = write(tmp_path, "iv.csv", "meter_id,ts,kwh\nM001,2026-03-01T00:00:00+08:00,0.5\n")
    proc = dianfei(db_env, "import", "intervals", str(iv), "--interval-minutes", "30", "--json")
    assert json.loads(proc.stdout) == {"accepted": 1, "rejected": 0, "duplicates": 0}
    proc = dianfei(db_env, "import", "intervals", str(iv), "--interval-minutes", "7")
    assert proc.returncode == 2 and "--interval-minutes" in proc.stderr


FIELDS = st.sampled_from(["M001", "M002", "M9", "", " ", "2026-03-01T00:00:00+08:00",
                          "2026-03-01T00:15:00", "2026-13-01T00:00:00+08:00", "0.25", "-1",
                          "1.2345", "1e3", "NaN", '"', '"a,b"', "\x00", "人工", "\ufeff", "\r"])
LINE = st.one_of(st.lists(FIELDS, min_size=0, max_size=5).map(",".join),
                 st.text(max_size=40).filter(lambda s: "\n" not in s))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, max_size=25), junk=st.binary(max_size=30))
def test_fuzz_every_row_is_accounted_for(seeded: Database, tmp_path: Path, lines: list[str],
                                         junk: bytes) -> None:
    body = "meter_id,ts,kwh\n" + "\n".join(lines) + "\n"
    path = tmp_path / "fuzz.csv"
    path.write_bytes(body.encode("utf-8") + junk)
    data_rows = sum(1 for line in (body.encode() + junk).split(b"\n")[1:]
                    if line.strip(b" \t\r"))
    try:
        res = run(seeded, "intervals", path, chunk_bytes=64)
    except ValidationError as exc:
        # the only errors a well-headed file may raise: bad bytes, or so many NULs it is binary
        assert "not valid utf-8" in str(exc) or "a binary file" in str(exc)
        return
    assert res.accepted + res.rejected + res.duplicates == data_rows


def test_found_case_quote_and_nul_lines_are_rejected_not_crashing(seeded: Database,
                                                                  tmp_path: Path) -> None:
    # found by the fuzz test: a carriage return inside a quoted line made csv raise
    path = write(tmp_path, "x.csv", 'meter_id,ts,kwh\n"\nM001,\x00,1\n"a,b",1\n\r,"\n')
    res = run(seeded, "intervals", path)
    assert (res.accepted, res.rejected, res.duplicates) == (0, 4, 0)
    reasons = (tmp_path / "x.csv.rejected.csv").read_text(encoding="utf-8")
    assert "malformed_line" in reasons and "wrong_field_count" in reasons
