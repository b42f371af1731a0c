from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from dianfei.core.clock import Period
from dianfei.sim import Utility, build_utility, id_number_valid
from dianfei.sim.population import CHANNELS, CLASSES

CUSTOMER_COLUMNS = [
    "customer_id", "name", "customer_class", "region_id", "station_id", "collector_id",
    "address", "phone", "id_number", "tariff_id", "low_income", "protected", "payment_mode",
    "opened_on", "age", "behaviour", "shock_month", "tamper_month", "preferred_channel",
    "capacity_kva", "demand_basis",
]


def test_same_seed_gives_identical_frames() -> None:
    a = build_utility(3000, seed=5)
    b = build_utility(3000, seed=5)
    for name in ("regions", "stations", "collectors", "customers", "meters"):
        assert getattr(a, name).equals(getattr(b, name)), name


def test_different_seeds_differ() -> None:
    a = build_utility(3000, seed=5)
    b = build_utility(3000, seed=6)
    assert not a.customers.equals(b.customers)
    assert not a.meters.equals(b.meters)
    assert (a.customers["name"] != b.customers["name"]).mean() > 0.5  # type: ignore[operator]


def test_columns_and_ids(county: Utility) -> None:
    c = county.customers
    assert c.columns == CUSTOMER_COLUMNS
    assert c["customer_id"][0] == "C00000001"
    assert c["customer_id"].is_sorted() and c["customer_id"].n_unique() == c.height
    assert c["customer_id"].str.len_chars().eq(9).all()
    assert set(c["customer_class"].unique()) == set(CLASSES)
    assert set(c["preferred_channel"].unique()) == set(CHANNELS)
    assert c.schema["opened_on"] == pl.Date and c.schema["capacity_kva"] == pl.Int64
    assert (c["opened_on"] < county.start.first_day).all()
    assert c["name"].null_count() == 0 and c["address"].str.starts_with("青溪县").all()


def test_proportions_at_20k(county: Utility) -> None:
    c = county.customers
    n = c.height
    share = {r[0]: r[1] / n for r in c.group_by("customer_class").len().iter_rows()}
    expected = {"residential": 0.88, "commercial": 0.06, "industrial": 0.02,
                "large_industry": 0.003, "agricultural": 0.037}
    for cls, want in expected.items():
        assert share[cls] == pytest.approx(want, abs=0.003), cls

    res = c.filter(pl.col("customer_class") == "residential")
    assert (res["tariff_id"] == "cn-zj-residential-tou").mean() == pytest.approx(0.15, abs=0.02)
    assert res["low_income"].mean() == pytest.approx(0.03, abs=0.008)
    assert res["protected"].mean() == pytest.approx(0.005, abs=0.003)
    assert (res["payment_mode"] == "prepaid").mean() == pytest.approx(0.20, abs=0.02)
    non_res = c.filter(pl.col("customer_class") != "residential")
    assert not non_res["low_income"].any() and not non_res["protected"].any()
    assert (non_res["payment_mode"] == "postpaid").all()

    tariff = dict(
        commercial="cn-general-commercial", industrial="cn-general-industrial",
        large_industry="cn-large-industry-example", agricultural="cn-agricultural-irrigation",
    )
    for cls, tid in tariff.items():
        assert (c.filter(pl.col("customer_class") == cls)["tariff_id"] == tid).all()
    assert set(res["tariff_id"].unique()) == {"cn-zj-residential", "cn-zj-residential-tou"}

    beh = res["behaviour"].value_counts(normalize=True)
    shares = dict(zip(beh["behaviour"], beh["proportion"], strict=True))
    assert shares["on_time"] == pytest.approx(0.70, abs=0.03)
    assert shares["vacant"] == pytest.approx(0.06, abs=0.01)
    assert shares["tamper"] == pytest.approx(0.01, abs=0.005)


def test_poor_customer_information(county: Utility) -> None:
    phone = county.customers["phone"]
    valid = phone.str.contains(r"^1[3-9]\d{9}$").fill_null(False)
    bad = 1 - valid.mean()  # type: ignore[operator]
    assert 0.012 < bad < 0.03
    assert phone.null_count() > 0


def test_id_numbers_and_ages(county: Utility) -> None:
    c = county.customers
    res = c.filter(pl.col("customer_class") == "residential")
    assert res["id_number"].null_count() == 0 and res["age"].null_count() == 0
    assert all(id_number_valid(x) for x in res["id_number"].head(3000))
    assert res["id_number"].str.len_chars().eq(18).all()
    birth_year = res["id_number"].str.slice(6, 4).cast(pl.Int32)
    assert ((county.start.year - birth_year) == res["age"]).all()
    assert res["age"].is_between(18, 100).all()
    others = c.filter(pl.col("customer_class") != "residential")
    assert others["id_number"].null_count() == others.height
    assert others["age"].null_count() == others.height
    assert not id_number_valid("11010519491231002Y")


def test_channel_follows_age(county: Utility) -> None:
    res = county.customers.filter(pl.col("customer_class") == "residential")
    young = res.filter(pl.col("age") < 35)["preferred_channel"]
    old = res.filter(pl.col("age") >= 70)["preferred_channel"]
    mobile = ("wechatpay", "alipay")
    offline = ("counter", "post_office")
    assert young.is_in(mobile).mean() > 0.6  # type: ignore[operator]
    assert old.is_in(offline).mean() > 0.6  # type: ignore[operator]


def test_behaviour_columns(county: Utility) -> None:
    c = county.customers
    hard = c.filter(pl.col("behaviour") == "hardship_shock")
    assert hard["shock_month"].null_count() == 0 and hard["shock_month"].is_between(1, 24).all()
    assert c.filter(pl.col("behaviour") != "hardship_shock")["shock_month"].null_count() == (
        c.height - hard.height
    )
    tamper = c.filter(pl.col("behaviour") == "tamper")
    assert tamper["tamper_month"].null_count() == 0
    assert c["tamper_month"].null_count() == c.height - tamper.height
    vacant = c.filter(pl.col("behaviour") == "vacant")
    assert set(vacant["customer_class"].unique()) <= {"residential", "commercial"}


def test_capacity_and_demand_basis(county: Utility) -> None:
    c = county.customers
    large = c.filter(pl.col("customer_class") == "large_industry")
    assert large["capacity_kva"].is_between(315_00, 5000_00).all()
    assert set(large["demand_basis"].unique()) == {"capacity", "demand"}
    assert c.filter(pl.col("customer_class") != "large_industry")["demand_basis"].null_count() == (
        c.height - large.height
    )
    res = c.filter(pl.col("customer_class").is_in(["residential", "agricultural"]))
    assert res["capacity_kva"].null_count() == res.height
    ci = c.filter(pl.col("customer_class").is_in(["commercial", "industrial"]))
    with_cap = ci.filter(pl.col("capacity_kva").is_not_null())
    assert with_cap.height > 0 and (with_cap["capacity_kva"] >= 100_00).all()


def test_geography_and_referential_integrity(county: Utility) -> None:
    u = county
    assert 6 <= u.regions.height <= 10
    per_region = u.stations.group_by("region_id").len()["len"]
    assert per_region.min() >= 1 and per_region.max() <= 3  # type: ignore[operator]
    assert u.stations["region_id"].is_in(u.regions["region_id"].implode()).all()
    assert u.collectors["station_id"].is_in(u.stations["station_id"].implode()).all()
    c = u.customers
    assert c.join(u.stations, on="station_id", how="anti").height == 0
    joined = c.join(u.stations, on="station_id", suffix="_st")
    assert (joined["region_id"] == joined["region_id_st"]).all()
    joined = c.join(u.collectors, on="collector_id", suffix="_co")
    assert joined.height == c.height
    assert (joined["station_id"] == joined["station_id_co"]).all()
    per_collector = c.height / u.collectors.height
    assert 1000 <= per_collector <= 3500
    m = u.meters
    assert m.height == c.height and m["meter_id"].n_unique() == m.height
    assert m.join(c, on="customer_id", how="anti").height == 0
    assert m["comm_address"].str.contains(r"^\d{12}$").all()
    assert m["comm_address"].n_unique() == m.height


def test_meters(county: Utility) -> None:
    m = county.meters.join(county.customers, on="customer_id")
    assert m["meter_id"][0] == "M00000001"
    assert (m.filter(pl.col("customer_class") == "residential")["multiplier"] == 1).all()
    assert set(m["digits"].unique()) == {5, 6}
    assert (m["installed_on"] >= m["opened_on"]).all()
    assert (m["installed_on"] < county.start.first_day).all()
    tou = m.filter(pl.col("tariff_id") == "cn-zj-residential-tou")
    assert (tou["registers"] == "total,peak,valley").all()
    full = m.filter(pl.col("registers") == "total,sharp,peak,flat,valley,kvarh,demand_kw")
    # every customer with a contracted capacity, and every commercial and industrial one
    # (they are on time-of-use tariffs), has a four-period meter with kvarh and demand
    assert m.filter(pl.col("capacity_kva").is_not_null())["registers"].eq(full["registers"][0]).all()
    assert full["customer_class"].is_in(["commercial", "industrial", "large_industry"]).all()
    assert full.height == m["customer_class"].is_in(
        ["commercial", "industrial", "large_industry"]).sum()
    ct = full.filter(pl.col("capacity_kva").is_not_null())
    assert ct["multiplier"].is_in([30, 40, 60, 80, 100, 200]).all()
    assert (full.filter(pl.col("capacity_kva").is_null())["multiplier"] == 1).all()
    assert (full["digits"] == 6).all()
    assert m.filter(pl.col("customer_class") == "large_industry")["registers"].eq(
        "total,sharp,peak,flat,valley,kvarh,demand_kw"
    ).all()


@pytest.mark.parametrize("n", [1, 10, 50, 499])
def test_small_counties(n: int) -> None:
    u = build_utility(n, seed=2)
    assert u.customers.height == n == u.meters.height
    assert u.regions.height >= 1
    if n >= 50:
        assert u.customers["customer_class"].n_unique() == 5


def test_other_start_period() -> None:
    u = build_utility(500, seed=3, start=Period(2023, 7))
    assert (u.meters["installed_on"] < date(2023, 7, 1)).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        build_utility(0)
    with pytest.raises(ValueError):
        build_utility(10, seed=-1)
