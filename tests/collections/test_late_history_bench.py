"""bench/late_history.py at a small size: the reads the daily run uses now find what the reads
they replaced found (the figures themselves are the benchmark's, not a test's)."""

from __future__ import annotations

import pytest

from tests.conftest import backend


@pytest.mark.db
def test_the_day_reads_agree_with_the_whole_book_reads() -> None:
    from bench.late_history import run

    got = run(3000, backend())
    assert got["accruals"] > 0 and got["in_arrears"] == 300
    assert got["history_same_as_whole_book"] is True
    assert got["history_of_arrears_rows"] > 0
    assert got["moved_found_by_both"] is True
