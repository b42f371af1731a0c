"""The synthetic county: regions, supply stations, collectors, customers and their meters.

Everything is built column-wise with NumPy and Polars (no per-customer Python loop), from
independent seeded streams (``_rng.stream``), so a million customers build in seconds and the
same seed always gives byte-identical frames.

Besides the public frames, ``build_utility`` keeps the hidden per-customer parameters of the
consumption model (base load, power factor, TOU shares, opening register values ...) in a
``SimModel`` cached on the ``Utility``; ``consumption.py`` reads them from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import polars as pl

from dianfei.core.clock import Period
from dianfei.sim import _names as names
from dianfei.sim._rng import pick, stream

CLASSES = ("residential", "commercial", "industrial", "large_industry", "agricultural")
RES, COM, IND, LARGE, AGRI = range(5)
#: share of customers per class (a realistic county)
CLASS_SHARES = (0.88, 0.06, 0.02, 0.003, 0.037)

TARIFF_RESIDENTIAL = "cn-zj-residential"
TARIFF_RESIDENTIAL_TOU = "cn-zj-residential-tou"
TARIFF_BY_CLASS = (
    TARIFF_RESIDENTIAL,
    "cn-general-commercial",
    "cn-general-industrial",
    "cn-large-industry-example",
    "cn-agricultural-irrigation",
)
RESIDENTIAL_TOU_SHARE = 0.15
#: the share of tamper customers with a time-of-use meter who bypass it at night
NIGHT_BYPASS_SHARE = 0.5
LOW_INCOME_SHARE = 0.03
PROTECTED_SHARE = 0.005
PREPAID_SHARE = 0.20

BEHAVIOURS = ("on_time", "late", "chronic_arrears", "hardship_shock", "vacant", "tamper")
ON_TIME, LATE, CHRONIC, HARDSHIP, VACANT, TAMPER = range(6)
#: behaviour mix per class (rows: CLASSES; columns: BEHAVIOURS)
BEHAVIOUR_SHARES = np.array(
    [
        [0.70, 0.17, 0.03, 0.03, 0.06, 0.01],
        [0.72, 0.18, 0.03, 0.03, 0.03, 0.01],
        [0.75, 0.18, 0.02, 0.03, 0.00, 0.02],
        [0.85, 0.12, 0.01, 0.01, 0.00, 0.01],
        [0.60, 0.30, 0.05, 0.03, 0.00, 0.02],
    ]
)

CHANNELS = ("counter", "bank_withholding", "alipay", "wechatpay", "online_banking", "post_office")
#: preferred channel by group: age <35, 35-54, 55-69, >=70, non-residential
CHANNEL_SHARES = np.array(
    [
        [0.05, 0.10, 0.35, 0.40, 0.08, 0.02],
        [0.15, 0.18, 0.22, 0.30, 0.10, 0.05],
        [0.38, 0.25, 0.07, 0.15, 0.03, 0.12],
        [0.50, 0.22, 0.02, 0.05, 0.01, 0.20],
        [0.15, 0.35, 0.05, 0.05, 0.35, 0.05],
    ]
)

#: standard distribution transformer sizes, kVA
TRANSFORMER_KVA = np.array(
    [100, 125, 160, 200, 250, 315, 400, 500, 630, 800, 1000, 1250, 1600, 2000, 2500, 3150,
     4000, 5000]
)
LARGE_KVA = TRANSFORMER_KVA[TRANSFORMER_KVA >= 315]

REGISTERS_TOTAL = "total"
REGISTERS_TOU = "total,peak,valley"
REGISTERS_FULL = "total,sharp,peak,flat,valley,kvarh,demand_kw"
OLD_METER_SHARE = 0.08  # 5-digit registers, among total-only meters
MANUAL_READ_SHARE = 0.04  # meters read by hand (no AMI), per meter

#: median and log-sd of a customer's base monthly use (kWh per average month), by class;
#: large industry is sized from its transformer capacity instead
BASE_MEDIAN_KWH = np.array([150.0, 800.0, 6000.0, 0.0, 1200.0])
BASE_SIGMA = np.array([0.55, 0.9, 1.0, 0.0, 0.7])


@dataclass(frozen=True)
class Utility:
    """A synthetic county utility; build it with ``build_utility``."""

    seed: int
    start: Period
    regions: pl.DataFrame
    stations: pl.DataFrame
    collectors: pl.DataFrame
    customers: pl.DataFrame
    meters: pl.DataFrame
    _cache: dict[str, Any] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @property
    def n_customers(self) -> int:
        return self.customers.height

    @property
    def model(self) -> SimModel:
        """The hidden parameters of the consumption model (set by ``build_utility``)."""
        m = self._cache.get("model")
        if m is None:
            raise ValueError("this Utility was not made by build_utility(): no consumption model")
        assert isinstance(m, SimModel)
        return m


@dataclass
class SimModel:
    """Per-customer hidden parameters (index i = customer i = meter i)."""

    cls: np.ndarray  # int8 class code
    behaviour: np.ndarray  # int8 behaviour code
    base_kwh: np.ndarray  # float64, kWh per average month
    multiplier: np.ndarray  # int64
    modulus: np.ndarray  # int64: 10**digits kWh in centi units
    manual: np.ndarray  # bool: read by hand
    tamper_month: np.ndarray  # int64 months after start, -1 when none
    tamper_keep: np.ndarray  # float64: share of usage still recorded after tampering
    idx2: np.ndarray  # customers with total,peak,valley
    idx4: np.ndarray  # customers with the full register set
    peak2_share: np.ndarray  # (n2,)
    shares4: np.ndarray  # (n4, 3): sharp, peak, flat; valley takes the rest
    pf: np.ndarray  # (n4,) base power factor
    opening: dict[str, np.ndarray]  # unwrapped opening register values (centi)
    meter_ids: pl.Series
    #: tamper customers with a time-of-use meter who bypass the meter at night (from
    #: tamper_month on their valley register records ``valley_keep`` of the valley energy and
    #: the other registers record in full) instead of scaling every register by tamper_keep
    night_bypass: np.ndarray  # bool (n,)
    valley_keep: np.ndarray  # float64 (n,)
    station: np.ndarray  # int64 (n,): the customer's supply station (row of ``stations``)


def _class_counts(n: int) -> np.ndarray:
    shares = np.array(CLASS_SHARES)
    counts = np.rint(n * shares).astype(np.int64)
    if n >= 50:
        counts[1:] = np.maximum(counts[1:], 1)
    counts[0] = n - counts[1:].sum()
    out: np.ndarray = counts
    return out


def _ids(prefix: str, n: int, width: int) -> pl.Series:
    return pl.select(
        pl.concat_str(
            [pl.lit(prefix), pl.int_range(1, n + 1, eager=False).cast(pl.String).str.zfill(width)]
        )
    ).to_series()


def _gather(values: tuple[str, ...] | list[str], idx: np.ndarray) -> pl.Series:
    return pl.Series(list(values), dtype=pl.String).gather(idx)


def _person_names(rng: np.random.Generator, n: int) -> pl.Series:
    surnames = [s for s, _ in names.SURNAMES]
    weights = np.array([w for _, w in names.SURNAMES])
    sur = rng.choice(len(surnames), size=n, p=weights / weights.sum())
    chars = [*names.GIVEN_CHARS, ""]
    g1 = rng.integers(0, len(chars) - 1, size=n)
    g2 = rng.integers(0, len(chars) - 1, size=n)
    g2 = np.where(rng.random(size=n) < 0.72, g2, len(chars) - 1)
    df = pl.DataFrame(
        {"s": _gather(surnames, sur), "a": _gather(chars, g1), "b": _gather(chars, g2)}
    )
    return df.select(pl.concat_str(["s", "a", "b"]).alias("name")).to_series()


def _day_numbers(d: date) -> int:
    return (d - date(1970, 1, 1)).days


def _to_dates(days: np.ndarray) -> pl.Series:
    return pl.Series(days.astype("datetime64[D]"))


def _id_numbers(rng: np.random.Generator, ages: np.ndarray, start: Period) -> pl.Series:
    """18-character resident ID numbers (GB 11643) with a valid check character."""
    n = int(ages.shape[0])
    areas = np.array(names.ID_AREAS, dtype=np.int64)
    area_p = np.full(len(areas), 0.2 / (len(areas) - 1))
    area_p[0] = 0.8
    area = areas[rng.choice(len(areas), size=n, p=area_p)]
    year = start.year - ages.astype(np.int64)
    first = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    born = first + rng.integers(0, 365, size=n).astype("timedelta64[D]")
    y = born.astype("datetime64[Y]").astype(np.int64) + 1970
    m = born.astype("datetime64[M]").astype(np.int64) % 12 + 1
    d = (born - born.astype("datetime64[M]")).astype(np.int64) + 1
    seq = rng.integers(1, 1000, size=n)
    body = area * 10**11 + (y * 10_000 + m * 100 + d) * 1000 + seq
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = np.zeros(n, dtype=np.int64)
    for pos, w in enumerate(weights):
        total += (body // 10 ** (16 - pos)) % 10 * w
    check = _gather(list("10X98765432"), total % 11)
    return pl.DataFrame({"b": pl.Series(body).cast(pl.String), "c": check}).select(
        pl.concat_str(["b", "c"]).alias("id_number")
    ).to_series()


def id_number_valid(text: str) -> bool:
    """Whether an 18-character resident ID has a valid GB 11643 check character."""
    if len(text) != 18 or not text[:17].isdigit():
        return False
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    s = sum(int(c) * w for c, w in zip(text[:17], weights, strict=True))
    return "10X98765432"[s % 11] == text[17]


def _phones(rng: np.random.Generator, n: int) -> pl.Series:
    """11-digit mobile numbers; ~1% missing and ~1% invalid (poor customer information)."""
    prefixes = np.array(names.MOBILE_PREFIXES, dtype=np.int64)
    num = prefixes[rng.integers(0, len(prefixes), size=n)] * 10**8 + rng.integers(0, 10**8, size=n)
    u = rng.random(size=n)
    kind = rng.integers(0, 3, size=n)
    landline = rng.integers(10**7, 10**8, size=n)
    df = pl.DataFrame({"num": num, "u": u, "kind": kind, "land": landline})
    s = pl.col("num").cast(pl.String)
    return df.select(
        pl.when(pl.col("u") < 0.01)
        .then(pl.lit(None, dtype=pl.String))
        .when((pl.col("u") < 0.02) & (pl.col("kind") == 0))
        .then(s.str.slice(0, 10))
        .when((pl.col("u") < 0.02) & (pl.col("kind") == 1))
        .then(pl.concat_str([pl.lit("0579-"), pl.col("land").cast(pl.String)]))
        .when(pl.col("u") < 0.02)
        .then(pl.lit("11111111111"))
        .otherwise(s)
        .alias("phone")
    ).to_series()


def _geography(seed: int, n: int) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray, np.ndarray]:
    """Regions and stations, and each station's region and share of customers."""
    rng = stream(seed, "geography")
    # 6-10 towns for a real county; fewer for the small ones tests build
    n_regions = int(rng.integers(6, 11)) if n >= 10_000 else max(1, min(5, n // 2000 + 1))
    towns = [names.SEAT] + [
        names.TOWNS[i] for i in rng.permutation(len(names.TOWNS))[: n_regions - 1]
    ]
    region_w = rng.uniform(0.6, 1.4, size=n_regions)
    region_w[0] = 3.0
    n_st = rng.integers(1, 4, size=n_regions)
    n_st[0] = 3 if n >= 10_000 else min(int(n_st[0]), 3)
    st_region: list[int] = []
    st_names: list[str] = []
    for r, town in enumerate(towns):
        for k in range(int(n_st[r])):
            st_region.append(r)
            if r == 0:
                st_names.append(names.SEAT_STATIONS[k])
            else:
                st_names.append(f"{town[:-1]}{names.STATION_SUFFIXES[k]}供电所")
    st_region_a = np.array(st_region, dtype=np.int64)
    within = rng.uniform(0.5, 1.5, size=len(st_region))
    st_w = np.empty(len(st_region))
    for r in range(n_regions):
        sel = st_region_a == r
        st_w[sel] = region_w[r] * within[sel] / within[sel].sum()
    st_w /= st_w.sum()
    regions = pl.DataFrame(
        {
            "region_id": [f"R{r + 1:02d}" for r in range(n_regions)],
            "name": towns,
            "kind": ["县城" if r == 0 else "乡镇" for r in range(n_regions)],
        }
    )
    stations = pl.DataFrame(
        {
            "station_id": [f"S{k + 1:03d}" for k in range(len(st_region))],
            "region_id": [f"R{r + 1:02d}" for r in st_region],
            "name": st_names,
        }
    )
    return regions, stations, st_region_a, st_w


def build_utility(n_customers: int, seed: int = 1, start: Period = Period(2025, 1)) -> Utility:
    """Build a synthetic county utility of ``n_customers`` customers, deterministic for ``seed``."""
    n = int(n_customers)
    if n < 1:
        raise ValueError("n_customers must be at least 1")
    if seed < 0:
        raise ValueError("seed must be >= 0")
    start_day = _day_numbers(start.first_day)

    # --- geography and classes -------------------------------------------------------------
    regions, stations, st_region, st_w = _geography(seed, n)
    counts = _class_counts(n)
    cls = stream(seed, "class").permutation(np.repeat(np.arange(5, dtype=np.int8), counts))
    station = stream(seed, "station").choice(len(st_w), size=n, p=st_w)
    region = st_region[station]
    is_res = cls == RES

    # collectors: ~1 per 1,500-3,000 customers, within each station
    rng = stream(seed, "collectors")
    per_station = np.bincount(station, minlength=len(st_w))
    n_coll = np.maximum(1, np.rint(per_station / rng.uniform(1500, 3000, size=len(st_w))))
    n_coll = n_coll.astype(np.int64)
    coll_off = np.concatenate([[0], np.cumsum(n_coll)[:-1]])
    total_coll = int(n_coll.sum())
    width = max(4, len(str(total_coll)))
    collectors = pl.DataFrame(
        {
            "collector_id": _ids("K", total_coll, width),
            "name": _person_names(rng, total_coll),
            "station_id": stations["station_id"].gather(np.repeat(np.arange(len(st_w)), n_coll)),
        }
    )
    collector = coll_off[station] + np.floor(
        stream(seed, "collector_of").random(size=n) * n_coll[station]
    ).astype(np.int64)

    # --- household facts -------------------------------------------------------------------
    age = np.clip(np.rint(stream(seed, "age").normal(54, 14, size=n)), 22, 95).astype(np.int64)
    tou = is_res & (stream(seed, "tariff").random(size=n) < RESIDENTIAL_TOU_SHARE)
    low_income = is_res & (stream(seed, "low_income").random(size=n) < LOW_INCOME_SHARE)
    protected = is_res & (stream(seed, "protected").random(size=n) < PROTECTED_SHARE)
    prepaid = is_res & (stream(seed, "payment_mode").random(size=n) < PREPAID_SHARE)
    rng = stream(seed, "opened_on")
    tenure = rng.exponential(np.where(is_res, 12 * 365.25, 8 * 365.25))
    opened = start_day - np.clip(tenure, 60, 40 * 365.25).astype(np.int64)

    beh = pick(stream(seed, "behaviour"), BEHAVIOUR_SHARES, cls).astype(np.int8)
    rng = stream(seed, "shock_month")
    shock = rng.integers(2, 21, size=n)
    rng = stream(seed, "tamper")
    tamper_month = np.where(beh == TAMPER, rng.integers(3, 19, size=n), -1)
    tamper_keep = rng.uniform(0.30, 0.60, size=n)

    group = np.select([age < 35, age < 55, age < 70], [0, 1, 2], 3)
    group = np.where(is_res, group, 4)
    channel = pick(stream(seed, "channel"), CHANNEL_SHARES, group)

    # --- load and connection ---------------------------------------------------------------
    rng = stream(seed, "base_kwh")
    z = rng.standard_normal(size=n)
    base = BASE_MEDIAN_KWH[cls] * np.exp(BASE_SIGMA[cls] * z)
    rng = stream(seed, "capacity")
    big_kva = LARGE_KVA[
        rng.choice(len(LARGE_KVA), size=n, p=_decreasing(len(LARGE_KVA)))
    ]
    load_factor = rng.uniform(0.44, 0.55, size=n)
    is_large = cls == LARGE
    base = np.where(is_large, big_kva * 730.0 * load_factor, base)
    has_cap = is_large | ((cls == COM) & (base >= 2500)) | ((cls == IND) & (base >= 3000))
    needed = np.maximum(100.0, base / (730 * 0.35))
    pos = np.minimum(np.searchsorted(TRANSFORMER_KVA, needed), len(TRANSFORMER_KVA) - 1)
    sized = TRANSFORMER_KVA[pos]
    kva = np.where(is_large, big_kva, sized)
    demand_basis = np.where(stream(seed, "demand_basis").random(size=n) < 0.3, "demand", "capacity")
    ct = np.select([kva <= 160, kva <= 250, kva <= 400, kva <= 630, kva <= 1250],
                   [30, 40, 60, 80, 100], 200)
    multiplier = np.where(has_cap, ct, 1).astype(np.int64)

    # --- meters ----------------------------------------------------------------------------
    # commercial and industrial customers are on time-of-use tariffs, so their meters record
    # the four TOU registers (plus kvarh and demand) whatever their size
    full = has_cap | (cls == COM) | (cls == IND)
    plain = ~full & ~tou
    # smart prepayment needs a remotely read and switched smart meter: never an old 5-digit
    # meter, never one read by hand
    digits = np.where(plain & ~prepaid & (stream(seed, "digits").random(size=n) < OLD_METER_SHARE),
                      5, 6)
    rng = stream(seed, "installed_on")
    last_ok = start_day - 1
    hi = last_ok - 90
    lo = min(_day_numbers(date(2012, 1, 1)), hi - 5 * 365)
    campaign = rng.integers(lo, hi, size=n)
    hi = min(_day_numbers(date(2012, 1, 1)), last_ok)
    lo = min(_day_numbers(date(1998, 1, 1)), hi - 10 * 365)
    old = rng.integers(lo, hi, size=n)
    installed = np.minimum(np.maximum(opened, np.where(digits == 5, old, campaign)), last_ok)
    manual = ~prepaid & (stream(seed, "read_source").random(size=n) < MANUAL_READ_SHARE)
    comm_prefix = stream(seed, "comm_address").integers(1000, 10_000, size=n)

    # --- frames ----------------------------------------------------------------------------
    customer_id = _ids("C", n, 8)
    meter_id = _ids("M", n, 8)
    region_names = regions["name"]
    town = region_names.gather(region)
    fr = pl.DataFrame(
        {
            "i": np.arange(n, dtype=np.int64),
            "cls": cls,
            "town": town,
            "seat": region == 0,
        }
    )
    rng = stream(seed, "names")
    person = _person_names(rng, n)
    shop = _gather(names.SHOP_PREFIXES, rng.integers(0, len(names.SHOP_PREFIXES), size=n))
    kind = _gather(names.SHOPS, rng.integers(0, len(names.SHOPS), size=n))
    ind = _gather(names.INDUSTRIES, rng.integers(0, len(names.INDUSTRIES), size=n))
    heavy = _gather(names.HEAVY_INDUSTRIES, rng.integers(0, len(names.HEAVY_INDUSTRIES), size=n))
    rng = stream(seed, "address")
    village = _gather(names.VILLAGES, rng.integers(0, len(names.VILLAGES), size=n))
    road = _gather(names.ROADS, rng.integers(0, len(names.ROADS), size=n))
    house = pl.Series(rng.integers(1, 300, size=n)).cast(pl.String)
    group_no = pl.Series(rng.integers(1, 13, size=n)).cast(pl.String)
    fr = fr.with_columns(
        person=person, shop=shop, kind=kind, ind=ind, heavy=heavy, village=village, road=road,
        house=house, grp=group_no,
    )
    stem = pl.col("town").str.slice(0, pl.col("town").str.len_chars() - 1)
    c = pl.col("cls")
    name_expr = (
        pl.when(c == RES).then(pl.col("person"))
        .when(c == COM).then(pl.concat_str([stem, "shop", "kind"]))
        .when(c == IND).then(pl.concat_str([pl.lit(names.COUNTY_STEM), "shop", "ind",
                                            pl.lit("有限公司")]))
        .when(c == LARGE).then(pl.concat_str([pl.lit(names.COUNTY_STEM), "shop", "heavy",
                                              pl.lit("股份有限公司")]))
        .otherwise(pl.concat_str(["village", pl.lit("村排灌站")]))
    )
    county = pl.lit(names.COUNTY)
    street = pl.concat_str([county, "town", "road", "house", pl.lit("号")])
    addr_expr = (
        pl.when(((c == RES) & pl.col("seat")) | (c == COM)).then(street)
        .when(c == RES).then(pl.concat_str([county, "town", "village", pl.lit("村"), "grp",
                                            pl.lit("组"), "house", pl.lit("号")]))
        .when((c == IND) | (c == LARGE)).then(pl.concat_str([county, "town", pl.lit("工业园区"),
                                                            "road", "house", pl.lit("号")]))
        .otherwise(pl.concat_str([county, "town", "village", pl.lit("村")]))
    )
    fr = fr.select(name_expr.alias("name"), addr_expr.alias("address"))
    phone = _phones(stream(seed, "phone"), n)
    id_number = _id_numbers(stream(seed, "id_number"), age, start)

    tariff_idx = np.where(tou, len(TARIFF_BY_CLASS), cls.astype(np.int64))
    null_i = pl.lit(None, dtype=pl.Int32)
    customers = pl.DataFrame(
        {
            "customer_id": customer_id,
            "name": fr["name"],
            "customer_class": _gather(CLASSES, cls.astype(np.int64)),
            "region_id": regions["region_id"].gather(region),
            "station_id": stations["station_id"].gather(station),
            "collector_id": collectors["collector_id"].gather(collector),
            "address": fr["address"],
            "phone": phone,
            "id_number": id_number,
            "tariff_id": _gather([*TARIFF_BY_CLASS, TARIFF_RESIDENTIAL_TOU], tariff_idx),
            "low_income": low_income,
            "protected": protected,
            "payment_mode": pl.Series(np.where(prepaid, "prepaid", "postpaid")),
            "opened_on": _to_dates(opened),
            "age": pl.Series(age, dtype=pl.Int32),
            "behaviour": _gather(BEHAVIOURS, beh.astype(np.int64)),
            "shock_month": pl.Series(shock, dtype=pl.Int32),
            "tamper_month": pl.Series(tamper_month, dtype=pl.Int32),
            "preferred_channel": _gather(CHANNELS, channel),
            "capacity_kva": pl.Series(kva * 100, dtype=pl.Int64),
            "demand_basis": pl.Series(demand_basis),
        }
    ).with_columns(
        pl.when(pl.col("customer_class") == "residential").then(pl.col("id_number")),
        pl.when(pl.col("customer_class") == "residential").then(pl.col("age")),
        pl.when(pl.col("behaviour") == "hardship_shock").then(pl.col("shock_month")),
        pl.when(pl.col("tamper_month") >= 0).then(pl.col("tamper_month")).otherwise(null_i),
        pl.when(pl.Series(has_cap)).then(pl.col("capacity_kva")),
        pl.when(pl.col("customer_class") == "large_industry").then(pl.col("demand_basis")),
    )

    registers = np.select([full, tou], [2, 1], 0)
    meters = pl.DataFrame(
        {
            "meter_id": meter_id,
            "comm_address": _comm_address(comm_prefix, n),
            "customer_id": customer_id,
            "multiplier": pl.Series(multiplier, dtype=pl.Int32),
            "digits": pl.Series(digits, dtype=pl.Int32),
            "installed_on": _to_dates(installed),
            "registers": _gather((REGISTERS_TOTAL, REGISTERS_TOU, REGISTERS_FULL), registers),
        }
    )

    utility = Utility(
        seed=seed, start=start, regions=regions, stations=stations, collectors=collectors,
        customers=customers, meters=meters,
    )
    utility._cache["model"] = _model(
        seed, start, cls, beh, base, multiplier, digits, manual, tamper_month, tamper_keep,
        np.flatnonzero(tou), np.flatnonzero(full), installed, meter_id, station,
    )
    return utility


def _comm_address(prefix: np.ndarray, n: int) -> pl.Series:
    """12-digit DL/T 645 addresses: a 4-digit batch prefix + an 8-digit serial (unique)."""
    return pl.DataFrame(
        {"p": pl.Series(prefix).cast(pl.String),
         "s": pl.Series(np.arange(1, n + 1)).cast(pl.String).str.zfill(8)}
    ).select(pl.concat_str(["p", "s"]).alias("comm_address")).to_series()


def _decreasing(k: int) -> np.ndarray:
    w = 1.0 / np.arange(1, k + 1) ** 0.8
    out: np.ndarray = w / w.sum()
    return out


def _model(
    seed: int, start: Period, cls: np.ndarray, beh: np.ndarray, base: np.ndarray,
    multiplier: np.ndarray, digits: np.ndarray, manual: np.ndarray, tamper_month: np.ndarray,
    tamper_keep: np.ndarray, idx2: np.ndarray, idx4: np.ndarray, installed: np.ndarray,
    meter_ids: pl.Series, station: np.ndarray,
) -> SimModel:
    n = int(cls.shape[0])
    # night bypass (夜间绕表): half of the tamper customers whose meter has a valley register;
    # a stream of its own, so every other draw (and every other customer's reads) is unchanged
    rng = stream(seed, "tamper_mode")
    has_valley = np.zeros(n, dtype=bool)
    has_valley[idx2] = True
    has_valley[idx4] = True
    night = (beh == TAMPER) & has_valley & (rng.random(size=n) < NIGHT_BYPASS_SHARE)
    valley_keep = rng.uniform(0.05, 0.35, size=n)
    rng = stream(seed, "tou_shares")
    peak2 = rng.uniform(0.50, 0.72, size=n)[idx2]
    s4 = np.stack(
        [rng.uniform(0.05, 0.12, size=n), rng.uniform(0.25, 0.35, size=n),
         rng.uniform(0.25, 0.35, size=n)],
        axis=1,
    )[idx4]
    rng = stream(seed, "power_factor")
    band = rng.random(size=n)
    pf = np.select(
        [band < 0.90, band < 0.97],
        [rng.uniform(0.85, 0.98, size=n), rng.uniform(0.70, 0.80, size=n)],
        rng.uniform(0.80, 0.85, size=n),
    )[idx4]

    # opening registers: what the meter accumulated since installation (unwrapped, centi)
    rng = stream(seed, "opening")
    months = (_day_numbers(start.first_day) - installed) / 30.4375
    primary = base * months * rng.uniform(0.5, 1.1, size=n)
    total = np.rint(primary * 100 / multiplier).astype(np.int64)
    opening: dict[str, np.ndarray] = {"total": total}
    t2 = total[idx2]
    opening["peak2"] = np.floor(t2 * peak2).astype(np.int64)
    opening["valley2"] = t2 - opening["peak2"]
    t4 = total[idx4]
    parts = np.floor(t4[:, None] * s4).astype(np.int64)
    opening["sharp4"], opening["peak4"], opening["flat4"] = parts[:, 0], parts[:, 1], parts[:, 2]
    opening["valley4"] = t4 - parts.sum(axis=1)
    opening["kvarh"] = np.rint(t4 * np.sqrt(1 - pf**2) / pf).astype(np.int64)
    return SimModel(
        cls=cls, behaviour=beh, base_kwh=base, multiplier=multiplier,
        modulus=(10 ** digits.astype(np.int64)) * 100, manual=manual,
        tamper_month=tamper_month.astype(np.int64), tamper_keep=tamper_keep, idx2=idx2,
        idx4=idx4, peak2_share=peak2, shares4=s4, pf=pf, opening=opening, meter_ids=meter_ids,
        night_bypass=night, valley_keep=valley_keep, station=station.astype(np.int64),
    )

