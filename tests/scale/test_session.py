"""The Spark backend's configuration and partitioning: no JVM needed."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dianfei.core.settings import load_settings
from dianfei.scale.billing import partition_ranges
from dianfei.scale.session import SparkSettings, SparkUnavailable, check_master, java_version


def _settings(tmp_path: Path, toml: str) -> SparkSettings:
    cfg = tmp_path / "dianfei.toml"
    cfg.write_text(toml)
    return SparkSettings.from_settings(load_settings({"DIANFEI_CONFIG": str(cfg)}), env={})


def test_configuration_names_master_partitions_and_properties(tmp_path: Path) -> None:
    cfg = _settings(tmp_path, '[spark]\nmaster = "spark://10.0.0.5:7077"\npartitions = 96\n'
                              '[spark.conf]\n"spark.executor.memory" = "8g"\n')
    assert (cfg.master, cfg.default_partitions()) == ("spark://10.0.0.5:7077", 96)
    assert cfg.conf == {"spark.executor.memory": "8g"}
    assert _settings(tmp_path, "").master == "local[2]"
    assert _settings(tmp_path, "").default_partitions() == 4  # twice local[2]'s cores
    assert SparkSettings(master="local[3,4]").default_partitions() == 6
    with pytest.raises(SparkUnavailable, match="partitions must be at least 1"):
        _settings(tmp_path, "[spark]\npartitions = 0\n")
    with pytest.raises(SparkUnavailable, match="must be a whole number"):
        _settings(tmp_path, '[spark]\npartitions = "many"\n')


def test_an_unreachable_master_and_an_old_java_are_named(tmp_path: Path) -> None:
    with pytest.raises(SparkUnavailable, match=r"spark://127\.0\.0\.1:1 cannot be reached"):
        check_master("spark://127.0.0.1:1", timeout=2)
    old = tmp_path / "java"
    old.write_text('#!/bin/sh\necho \'java version "1.8.0_402"\' >&2\n')
    old.chmod(0o755)
    assert java_version(str(old)) == 8
    new = tmp_path / "java17"
    new.write_text('#!/bin/sh\necho \'openjdk version "17.0.15" 2025-04-15\' >&2\n')
    new.chmod(0o755)
    assert java_version(str(new)) == 17


@given(st.sets(st.integers(0, 10_000), min_size=1, max_size=300), st.integers(1, 40))
def test_partitions_are_contiguous_even_ranges_covering_every_account(
        ids: set[int], partitions: int) -> None:
    accounts = pl.Series([f"C{i:08d}" for i in ids])
    parts = partition_ranges(accounts, partitions).sort("account_id")
    assert parts["account_id"].to_list() == sorted(accounts.to_list())
    sizes = parts.group_by("part").len()["len"].to_list()
    assert parts["part"].n_unique() == min(partitions, len(ids))
    assert max(sizes) - min(sizes) <= 1
    assert parts["part"].is_sorted()  # contiguous: a range of ids per partition


def test_spark_hash_of_an_int_is_sparks_own() -> None:
    """Read off Spark 4.3 (`SELECT hash(CAST(x AS INT))`); the Spark test checks 2,050 more."""
    from dianfei.scale.billing import spark_hash_int

    assert spark_hash_int(2147483647) == 133916647
    assert spark_hash_int(-2147483648) == 723455942
