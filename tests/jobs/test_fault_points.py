"""The fault points of the crash tests (dianfei/core/faults.py): inert unless named, the n-th
pass dies of SIGKILL, a misspelt point is refused, and every listed point is in the code."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dianfei.core import faults


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(faults.ENV, raising=False)
    faults.reset()
    yield
    faults.reset()


def test_a_point_does_nothing_unless_named(monkeypatch: pytest.MonkeyPatch) -> None:
    faults.kill_point("import.chunk_fed")  # unset: nothing
    faults.reset()
    monkeypatch.setenv(faults.ENV, "risk.scores_written")
    for _ in range(3):
        faults.kill_point("import.chunk_fed")  # another point: nothing


@pytest.mark.parametrize(("spec", "says"), [
    ("import.chunk_feed", "unknown fault point 'import.chunk_feed'"),
    ("import.chunk_fed:two", "must be a whole number, got 'two'"),
    ("import.chunk_fed:0", "must be 1 or more, got 0"),
])
def test_a_wrong_setting_is_refused_naming_it(spec: str, says: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.ENV, spec)
    with pytest.raises(ValueError, match=re.escape(says)):
        faults.kill_point("import.chunk_fed")


def test_the_nth_pass_dies_of_sigkill() -> None:
    code = ("from dianfei.core.faults import kill_point\n"
            "for i in range(1, 4):\n"
            "    kill_point('import.chunk_fed')\n"
            "    print(i, flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, faults.ENV: "import.chunk_fed:2"})
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout.split() == ["1"]  # died on the second pass, before printing 2


def test_every_listed_point_is_placed_once_in_the_code() -> None:
    src = Path(faults.__file__).parents[1]
    placed = [m for p in src.rglob("*.py") if p.name != "faults.py"
              for m in re.findall(r'kill_point\("([^"]+)"\)', p.read_text(encoding="utf-8"))]
    assert sorted(placed) == sorted(faults.POINTS)

