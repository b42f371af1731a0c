"""Tariff file validation: every error names the file, the field and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from dianfei.core.clock import Period
from dianfei.core.errors import TariffError
from dianfei.tariffs.service import load_catalogue

GOOD = """\
id = "t-test"
name = "测试 Test"
customer_class = "residential"

[[versions]]
effective_from = 2020-01-01
effective_to = 2022-12-31
source = "test notice"

[versions.energy]
kind = "tiered"
basis = "annual"
tiers = [
  { upto = "2760", price = "0.5380" },
  { upto = "4800", price = "0.5880" },
  { price = "0.8380" },
]

[[versions]]
effective_from = 2023-01-01
source = "test notice 2"
pf_standard = "0.90"

[versions.energy]
kind = "tou"
periods = ["peak", "valley"]
prices = { peak = "0.5680", valley = "0.2880" }
"""


def _load(tmp_path: Path, text: str, name: str = "t-test") -> None:
    (tmp_path / f"{name}.toml").write_text(text, encoding="utf-8")
    load_catalogue(tmp_path)


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(TariffError) as err:
        _load(tmp_path, text)
    return str(err.value)


def test_good_file_loads(tmp_path: Path) -> None:
    _load(tmp_path, GOOD)
    cat = load_catalogue(tmp_path)
    assert cat.ids() == ["t-test"]
    assert [str(v.effective_from) for v in cat.versions("t-test")] == ["2020-01-01",
                                                                      "2023-01-01"]
    assert cat.version_for("t-test", Period(2023, 1)).pf_standard == "0.90"
    assert cat.version_for("t-test", Period(2022, 12)).pf_standard is None


def test_gap(tmp_path: Path) -> None:
    msg = _error(tmp_path, GOOD.replace("effective_from = 2023-01-01",
                                        "effective_from = 2023-02-01"))
    assert msg.startswith("t-test.toml: versions[1].effective_from: gap")
    assert "2022-12-31" in msg


def test_overlap(tmp_path: Path) -> None:
    msg = _error(tmp_path, GOOD.replace("effective_from = 2023-01-01",
                                        "effective_from = 2022-12-01"))
    assert msg.startswith("t-test.toml: versions[1].effective_from: overlap")


def test_open_ended_version_followed_by_another(tmp_path: Path) -> None:
    msg = _error(tmp_path, GOOD.replace("effective_to = 2022-12-31\n", ""))
    assert "t-test.toml: versions[1].effective_from: overlap" in msg


def test_negative_price(tmp_path: Path) -> None:
    msg = _error(tmp_path, GOOD.replace('valley = "0.2880"', 'valley = "-0.2880"'))
    assert msg.startswith("t-test.toml: versions[1].energy.prices.valley: negative price")


def test_tiers_out_of_order(tmp_path: Path) -> None:
    msg = _error(tmp_path, GOOD.replace('upto = "4800"', 'upto = "2000"'))
    assert msg.startswith("t-test.toml: versions[0].energy.tiers[1].upto: tiers out of order")
    msg = _error(tmp_path, GOOD.replace('price = "0.8380"', 'price = "0.4000"'))
    assert msg.startswith("t-test.toml: versions[0].energy.tiers[2]: tiers out of order")


def test_unknown_key(tmp_path: Path) -> None:
    msg = _error(tmp_path, GOOD.replace("effective_to =", "effective_too ="))
    assert msg.startswith("t-test.toml: versions[0].effective_too: unknown key 'effective_too'")


def test_unknown_component_kind(tmp_path: Path) -> None:
    msg = _error(tmp_path, GOOD.replace('kind = "tou"', 'kind = "tuo"'))
    assert msg.startswith("t-test.toml: versions[1].energy.kind: unknown component kind 'tuo'")


def test_missing_tou_price(tmp_path: Path) -> None:
    msg = _error(tmp_path, GOOD.replace('periods = ["peak", "valley"]',
                                        'periods = ["peak", "flat", "valley"]'))
    assert msg.startswith("t-test.toml: versions[1].energy.prices.flat: missing TOU price")


def test_pf_standard_not_in_tables(tmp_path: Path) -> None:
    msg = _error(tmp_path, GOOD.replace('pf_standard = "0.90"', 'pf_standard = "0.95"'))
    assert msg.startswith("t-test.toml: versions[1].pf_standard: PF standard '0.95' not in")


def test_malformed_date(tmp_path: Path) -> None:
    msg = _error(tmp_path, GOOD.replace("effective_from = 2023-01-01",
                                        'effective_from = "2023-1-1"'))
    assert msg.startswith("t-test.toml: versions[1].effective_from: malformed date")


def test_float_price_refused(tmp_path: Path) -> None:
    msg = _error(tmp_path, GOOD.replace('peak = "0.5680"', "peak = 0.568"))
    assert msg.startswith("t-test.toml: versions[1].energy.prices.peak: write numbers as quoted")


def test_id_must_match_file_name(tmp_path: Path) -> None:
    with pytest.raises(TariffError, match=r"other\.toml: id: id 't-test' must match"):
        _load(tmp_path, GOOD, name="other")


def test_toml_syntax_error_names_file(tmp_path: Path) -> None:
    with pytest.raises(TariffError, match=r"t-test\.toml: \(syntax\)"):
        _load(tmp_path, GOOD + "\n[[versions\n")


def test_tou_hours_must_cover_the_day(tmp_path: Path) -> None:
    text = GOOD.replace('prices = { peak = "0.5680", valley = "0.2880" }',
                        'prices = { peak = "0.5680", valley = "0.2880" }\n'
                        'hours = { peak = ["08:00-22:00"], valley = ["23:00-08:00"] }')
    msg = _error(tmp_path, text)
    assert msg.startswith("t-test.toml: versions[1].energy.hours: periods must cover")


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(TariffError, match="no tariff files"):
        load_catalogue(tmp_path)


def test_allowance_priced_above_the_cheapest_kwh_is_refused(tmp_path: Path) -> None:
    # 10 free kWh credited at 0.5380 on a tariff where a valley kWh costs 0.2880 would turn a
    # small valley-heavy bill negative (found by `ledger check` on the demo)
    msg = _error(tmp_path, GOOD + '\n[versions.low_income]\nfree_kwh = "10"\nprice = "0.5380"\n'
                 'source = "test"\n')
    assert "t-test.toml: versions[1].low_income.price" in msg
    assert "exceeds the lowest energy price 0.2880" in msg
    _load(tmp_path, GOOD + '\n[versions.low_income]\nfree_kwh = "10"\nprice = "0.2880"\n'
          'source = "test"\n')
