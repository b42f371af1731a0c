"""Theft and anomaly warnings (窃电/计量异常预警) on monthly consumption.

Pure functions on Polars frames, so the same code scores the synthetic county, an imported
utility's bill history, or a million accounts. The input is one row per account and month:
``account_id``, ``period`` (``YYYY-MM``), ``kwh`` (Int64, 0.01 kWh — billed or metered energy),
and the account facts ``account_id``, ``customer_class``.

Every signal compares an account with itself before and with *similar customers in the same
month* (its class), so seasons, holidays and weather cancel out:

``rel`` = (kwh + 1 kWh) / (median kwh of the class that month + 1 kWh) — the account's usage
relative to its peers. The last ``recent`` months ("now") are compared with the ``baseline``
months before them ("before"):

| signal | meaning | column |
|---|---|---|
| sudden sustained drop | log(median rel now / median rel before) | ``drop`` |
| … measured in the account's own noise | ``drop`` / the spread of its log rel before | ``drop_z`` |
| … and against its peers | robust z-score of ``drop`` within the class (median, MAD) | ``peer_z`` |
| sustained | months now below 70 % of the account's level before | ``months_low`` |
| zero run on an occupied profile | trailing months at 0 kWh, before ≥ 30 kWh a month | ``zero_run`` |
| flat line | the last ``flat_months`` months within 1 % while the class moved ≥ 10 % | ``flat_line`` |

Two more signals come from other data, when it is given (null otherwise, scoring nothing):

- night/day pattern break (``night_drop``, ``night_z``, ``night_peer_z``, ``night_months``,
  ``valley_share_before/now``): the valley (night) share of the account's time-of-use energy,
  relative to its class that month, now against its level before (:func:`night_features`) —
  a night bypass; the total may hold;
- station line loss, 台区线损 (``station_id``, ``station_rise``, ``station_corr``,
  ``station_share``): its station's loss (supply − Σ billed) / supply rose from its own level
  (:func:`station_losses`), and the account's use fell in step with it — ``station_corr`` the
  correlation month by month, ``station_share`` its fall ÷ the station's extra lost energy.

``score`` (0–100) is the transparent unsupervised score: the larger of the drop measured in the
account's own noise and against its peers (each only downwards, capped at 6σ) plus points for
a sustained drop, a zero run, a flat line, a sustained fall of the valley share (per σ) and a
fall that moved with its station's loss — see :class:`Weights`. An isolation forest
(scikit-learn) gives a second, model-free view (``iforest``, 0–1) on the kWh signals,
``night_drop`` and ``station_corr`` (:data:`FOREST_COLUMNS`). ``reasons`` (en) and
``reasons_zh`` (zh-CN) name the signals that fired, in words.

Measured on the synthetic county's planted tampering (scaled meters and night bypasses) in
docs/risk-insight.md: the valley share finds every night bypass; the stations of the synthetic
county are too large (供电所, not 台区) for the line loss to name single homes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dianfei.core.clock import Period
from dianfei.core.errors import ValidationError

if TYPE_CHECKING:
    import polars as pl

#: 1 kWh in the 0.01-kWh units of ``kwh``: keeps a near-zero month (winter irrigation) finite
EPS = 100
#: MAD → standard deviation for a normal distribution
MAD_SCALE = 1.4826


@dataclass(frozen=True)
class Weights:
    """The points of the unsupervised score (a utility may tune them; they are data)."""

    per_sigma: float = 10.0       # per σ of downward drop (the larger of own and peer σ)
    sigma_cap: float = 6.0
    sustained: float = 5.0        # per month now below 70 % of before
    low_share: float = 0.7
    zero_run: float = 25.0        # a zero run of ≥ 2 months on an occupied profile
    occupied_kwh: int = 3_000     # 30 kWh a month (0.01 kWh)
    flat_line: float = 15.0
    flat_tolerance: float = 0.01
    class_moved: float = 0.10
    # night/day pattern break (time-of-use registers)
    night_per_sigma: float = 8.0  # per σ of fall in the valley (night) share, sustained
    night_min_kwh: int = 1_000    # a month counts with ≥ 10 kWh on the time-of-use registers
    # station line loss (台区线损)
    station_points: float = 30.0  # × the correlation of the account's fall with the station's loss
    station_min_corr: float = 0.5  # … counted from 0.5 (≈ 2.5σ over 24 months of noise)
    station_min_rise: float = 0.005  # the station's loss rose by ≥ 0.5 percentage points
    station_min_months: int = 6   # months of both series for a correlation
    station_min_share: float = 0.05  # the account's fall covers ≥ 5 % of the station's extra loss


WEIGHTS = Weights()

#: the night/day signals (null for an account without time-of-use energy in the window)
NIGHT_COLUMNS = ("valley_share_before", "valley_share_now", "night_drop", "night_z",
                 "night_peer_z", "night_months")
#: the station line-loss signals (null without station supply, or for an account without a
#: station)
STATION_COLUMNS = ("station_id", "station_loss_before", "station_loss_now", "station_rise",
                   "station_z", "station_fall_kwh", "station_share", "station_corr")
FEATURE_COLUMNS = ("drop", "drop_z", "peer_z", "months_low", "zero_run", "flat_line",
                   "level_before", "night_drop", "night_z", "night_peer_z", "night_months",
                   "station_corr", "station_share")
#: what the isolation forest sees: the kWh signals, the fall of the valley share and the
#: correlation with the station's loss (the z-scores and counts of the new signals only add
#: noise to a direction-free model: measured in docs/risk-insight.md)
FOREST_COLUMNS = ("drop", "drop_z", "peer_z", "months_low", "zero_run", "flat_line",
                  "night_drop", "station_corr")


def indexed(history: pl.DataFrame) -> pl.DataFrame:
    """history + ``pidx`` (months since year 0, Int32), computed once from the distinct periods
    (a handful) rather than by parsing every row; a period that is not ``YYYY-MM`` is refused."""
    import polars as pl

    if "pidx" in history.columns:
        return history
    if history.height == 0:
        return history.with_columns(pl.lit(None, dtype=pl.Int32).alias("pidx"))
    mapping: dict[str, int] = {}
    for p in history["period"].unique().to_list():
        try:
            mapping[p] = Period.parse(str(p)).index()
        except ValidationError as exc:
            raise ValidationError(exc.message, where="consumption history") from None
    return history.with_columns(pl.col("period").replace_strict(
        mapping, return_dtype=pl.Int32).alias("pidx"))


def relative_usage(history: pl.DataFrame, facts: pl.DataFrame) -> pl.DataFrame:
    """history + ``pidx`` and ``rel``: usage relative to the class median of the same month."""
    import polars as pl

    h = (indexed(history).select("account_id", "period", "pidx", pl.col("kwh").cast(pl.Int64))
         .join(facts.select("account_id", "customer_class"), on="account_id", how="left")
         .with_columns(pl.col("customer_class").fill_null("unknown")))
    med = pl.col("kwh").median().over("customer_class", "period")
    return h.with_columns(((pl.col("kwh") + EPS) / (med + EPS)).alias("rel"))


def features(history: pl.DataFrame, facts: pl.DataFrame, as_of: Period, *, recent: int = 3,
             baseline: int = 21, flat_months: int = 4, weights: Weights = WEIGHTS,
             tou: pl.DataFrame | None = None, supply: pl.DataFrame | None = None,
             stations: pl.DataFrame | None = None,
             interrupted: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per account with a month in the window ending at ``as_of`` (inclusive): the
    signals of the module table. Only months ≤ ``as_of`` are read (no look-ahead).

    ``tou`` (account_id, period, valley, kwh: the valley register's energy and the energy of all
    time-of-use registers, 0.01 kWh) adds the night/day signals (:func:`night_features`);
    ``supply`` (station_id, period, kwh: what each station's meter measured entering it) adds
    the station line-loss signals (:func:`station_losses`), with ``stations`` (account_id,
    station_id: every account ever in a station, closed ones too, so the station's metered sum
    is complete; default: ``facts``' station_id). Without them those columns are null and score
    nothing.

    ``interrupted`` (account_id, period): the months in which the account's supply was off
    (停电: cut for arrears or by prepayment, customers' supply interruptions). A meter without
    power registers nothing, so such a month says nothing about the account: it is left out of
    the account's own signals (and of its class's medians) — a customer cut off is not a
    suspect. The station's metered sum still counts its bills (that energy did pass the
    station's meter)."""
    import polars as pl

    end = as_of.year * 12 + as_of.month - 1
    own = history if interrupted is None or interrupted.height == 0 else history.join(
        interrupted.select("account_id", "period"), on=["account_id", "period"], how="anti")
    h0 = indexed(own)
    h = relative_usage(h0.filter((pl.col("pidx") <= end)
                                 & (pl.col("pidx") > end - recent - baseline)), facts)
    h = h.with_columns((pl.col("pidx") > end - recent).alias("now"),
                       pl.col("rel").log().alias("lrel"))
    # the level before: the highest 3-month median of rel in the baseline — theft that began
    # long ago still shows against the months before it began
    before = (h.filter(~pl.col("now")).group_by("account_id").agg(
        pl.col("rel").sort_by("pidx").rolling_median(window_size=min(3, baseline), min_samples=1)
        .max().alias("rel_before"),
        pl.col("lrel").std().alias("spread"),
        pl.col("kwh").median().alias("level_before"),
        pl.len().alias("months_before")))
    cm_eps = pl.col("kwh").median().over("customer_class", "pidx") + EPS
    now = (h.with_columns(cm_eps.alias("_cm")).filter(pl.col("now"))
           .join(before.select("account_id", "rel_before"), on="account_id", how="inner")
           .group_by("account_id").agg(
               pl.col("rel").median().alias("rel_now"),
               (pl.col("rel") < pl.col("rel_before") * weights.low_share).sum().cast(pl.Int32)
               .alias("months_low"),
               pl.len().alias("months_now"),
               # what it would have used at its level before, less what it used (0.01 kWh)
               (pl.col("rel_before") * pl.col("_cm") - pl.col("kwh") - EPS).median()
               .alias("fall_kwh")))
    # trailing zero months: walk back from the newest month while kwh == 0
    zeros = h.group_by("account_id").agg(
        (pl.col("kwh").sort_by("pidx", descending=True) == 0).cast(pl.Int32).cum_prod().sum()
        .alias("zeros"))
    class_mean = (h.group_by("customer_class", "pidx").agg(pl.col("kwh").median().alias("cm")))
    last = h.filter(pl.col("pidx") > end - flat_months)
    flat = (last.join(class_mean, on=["customer_class", "pidx"], how="left")
            .group_by("account_id").agg(
                pl.len().alias("n_flat"),
                ((pl.col("kwh").max() - pl.col("kwh").min())
                 <= pl.col("kwh").mean() * weights.flat_tolerance).alias("still"),
                ((pl.col("cm").max() - pl.col("cm").min())
                 >= pl.col("cm").mean() * weights.class_moved).alias("moved"),
                (pl.col("kwh").mean() > 0).alias("some")))
    f = (now.join(before, on="account_id", how="inner")
         .join(zeros, on="account_id", how="left").join(flat, on="account_id", how="left")
         .join(facts.select("account_id", "customer_class"), on="account_id", how="left")
         .with_columns(pl.col("customer_class").fill_null("unknown")))
    drop = (pl.col("rel_now") / pl.col("rel_before")).log()
    f = f.with_columns(
        drop.alias("drop"),
        (drop / pl.max_horizontal(pl.col("spread").fill_null(0.0), pl.lit(0.05))).alias("drop_z"))
    med = pl.col("drop").median().over("customer_class")
    mad = (pl.col("drop") - med).abs().median().over("customer_class") * MAD_SCALE
    f = f.with_columns(
        ((pl.col("drop") - med) / pl.max_horizontal(mad, pl.lit(0.05))).alias("peer_z"),
        pl.when(pl.col("level_before") >= weights.occupied_kwh).then(pl.col("zeros"))
        .otherwise(0).cast(pl.Int32).alias("zero_run"),
        (pl.col("still") & pl.col("moved") & pl.col("some")
         & (pl.col("n_flat") >= flat_months)).fill_null(False).alias("flat_line"),
    )
    # night/day: null unless time-of-use energy is given
    if tou is not None:
        night = night_features(tou, facts, as_of, recent=recent, baseline=baseline,
                               weights=weights)
        f = f.join(night, on="account_id", how="left")
    else:
        f = f.with_columns(*[pl.lit(None, dtype=pl.Int32 if c == "night_months" else pl.Float64)
                             .alias(c) for c in NIGHT_COLUMNS])
    # station line loss: null unless station supply is given
    if supply is not None:
        if stations is None:
            if "station_id" not in facts.columns:
                raise ValidationError("station supply needs each account's station_id",
                                      where="theft signals")
            stations = facts.select("account_id", "station_id")
        losses = station_losses(history, stations, supply, as_of, recent=recent,
                                baseline=baseline)
        monthly = station_monthly_loss(history, stations, supply, as_of,
                                       months=recent + baseline)
        # "fell when it rose": the correlation, month by month over the window, of the
        # account's usage below its class (−rel) with its station's loss rate. A bypassed meter
        # moves both at once; an honest fall lowers the station's supply with it and leaves
        # the loss where it was
        member = stations.select("account_id", "station_id").unique("account_id")
        corr = (h.select("account_id", "pidx", "rel").join(member, on="account_id", how="inner")
                .join(monthly.select("station_id", "pidx", "loss"), on=["station_id", "pidx"],
                      how="inner")
                .group_by("account_id").agg(
                    pl.corr(-pl.col("rel"), pl.col("loss")).alias("station_corr"),
                    pl.len().alias("_corr_months")))
        f = (f.join(member, on="account_id", how="left")
             .join(losses.select("station_id", pl.col("loss_before").alias("station_loss_before"),
                                 pl.col("loss_now").alias("station_loss_now"),
                                 pl.col("rise").alias("station_rise"),
                                 pl.col("rise_z").alias("station_z"),
                                 pl.col("extra_lost_kwh")),
                   on="station_id", how="left")
             .join(corr, on="account_id", how="left"))
        f = f.with_columns(
            pl.col("fall_kwh").alias("station_fall_kwh"),
            pl.when(pl.col("_corr_months") >= weights.station_min_months)
            .then(pl.col("station_corr").fill_nan(None)).alias("station_corr"),
            pl.when(pl.col("station_rise").is_null()).then(None)
            .when((pl.col("extra_lost_kwh") > 0) & (pl.col("fall_kwh") > 0))
            .then(pl.min_horizontal(pl.col("fall_kwh") / pl.col("extra_lost_kwh"), pl.lit(1.0)))
            .otherwise(0.0).alias("station_share"))
    else:
        f = f.with_columns(*[pl.lit(None, dtype=pl.String if c == "station_id" else pl.Float64)
                             .alias(c) for c in STATION_COLUMNS])
    return f.select("account_id", "customer_class", "months_before", "months_now",
                    *FEATURE_COLUMNS, *[c for c in NIGHT_COLUMNS if c not in FEATURE_COLUMNS],
                    *[c for c in STATION_COLUMNS if c not in FEATURE_COLUMNS])


#: added to both shares so that a month with (almost) no night energy stays finite
SHARE_EPS = 0.01


def night_features(tou: pl.DataFrame, facts: pl.DataFrame, as_of: Period, *, recent: int = 3,
                   baseline: int = 21, weights: Weights = WEIGHTS) -> pl.DataFrame:
    """The night/day pattern break (夜间用电占比突变): each month's valley (night) share of an
    account's time-of-use energy, relative to its class's median share that month
    (``lshare`` = log((share + 1 %) / (class median + 1 %))), now (the last ``recent`` months)
    against before (the highest 3-month median of the ``baseline`` months before) — so a
    season or a tariff change that moves the whole class cancels out, and the total may hold.

    ``tou``: account_id, period, valley, kwh (0.01 kWh; kwh = all time-of-use registers).
    Months with less than ``weights.night_min_kwh`` on the registers are left out. Returns
    account_id and ``NIGHT_COLUMNS``: the median valley share before and now, ``night_drop``
    (lshare now − before), ``night_z`` (in the account's own spread), ``night_peer_z`` (robust
    z within the class) and ``night_months`` (months now below 70 % of the share before)."""
    import math

    import polars as pl

    end = as_of.year * 12 + as_of.month - 1
    t = (indexed(tou).filter((pl.col("pidx") <= end) & (pl.col("pidx") > end - recent - baseline))
         .select("account_id", "pidx", pl.col("valley").cast(pl.Int64),
                 pl.col("kwh").cast(pl.Int64))
         .filter(pl.col("kwh") >= weights.night_min_kwh))
    bad = t.filter((pl.col("valley") < 0) | (pl.col("valley") > pl.col("kwh")))
    if bad.height:
        r = bad.row(0, named=True)
        raise ValidationError(f"valley energy {r['valley']} outside 0..{r['kwh']} (the total of "
                              "the time-of-use registers)",
                              where=f"time-of-use history of {r['account_id']}")
    t = (t.join(facts.select("account_id", "customer_class"), on="account_id", how="left")
         .with_columns(pl.col("customer_class").fill_null("unknown"),
                       (pl.col("valley") / pl.col("kwh")).alias("share")))
    med = pl.col("share").median().over("customer_class", "pidx")
    t = t.with_columns(((pl.col("share") + SHARE_EPS) / (med + SHARE_EPS)).log().alias("ls"),
                       (pl.col("pidx") > end - recent).alias("now"))
    before = t.filter(~pl.col("now")).group_by("account_id").agg(
        pl.col("ls").sort_by("pidx").rolling_median(window_size=min(3, baseline), min_samples=1)
        .max().alias("ls_before"),
        pl.col("ls").std().alias("ls_spread"),
        pl.col("share").median().alias("valley_share_before"))
    low = math.log(weights.low_share)
    now = (t.filter(pl.col("now")).join(before.select("account_id", "ls_before"),
                                        on="account_id", how="inner")
           .group_by("account_id").agg(
               pl.col("ls").median().alias("ls_now"),
               pl.col("share").median().alias("valley_share_now"),
               (pl.col("ls") < pl.col("ls_before") + low).sum().cast(pl.Int32)
               .alias("night_months"),
               pl.col("customer_class").first()))
    n = now.join(before, on="account_id", how="inner").with_columns(
        (pl.col("ls_now") - pl.col("ls_before")).alias("night_drop"))
    pmed = pl.col("night_drop").median().over("customer_class")
    pmad = (pl.col("night_drop") - pmed).abs().median().over("customer_class") * MAD_SCALE
    n = n.with_columns(
        (pl.col("night_drop") / pl.max_horizontal(pl.col("ls_spread").fill_null(0.0),
                                                  pl.lit(0.05))).alias("night_z"),
        ((pl.col("night_drop") - pmed) / pl.max_horizontal(pmad, pl.lit(0.05)))
        .alias("night_peer_z"))
    return n.select("account_id", *NIGHT_COLUMNS)


def station_monthly_loss(history: pl.DataFrame, stations: pl.DataFrame, supply: pl.DataFrame,
                         as_of: Period, *, months: int = 24) -> pl.DataFrame:
    """station_id, pidx, period, supply, metered, loss of every station and month in the
    ``months`` up to ``as_of``: loss = (supply − Σ its accounts' billed energy) / supply.
    Months without supply are left out; a month with supply and no bills counts them as zero.
    ``history``: account_id, period, kwh; ``stations``: account_id, station_id; ``supply``:
    station_id, period, kwh (0.01 kWh, positive)."""
    import polars as pl

    end = as_of.year * 12 + as_of.month - 1
    window = (pl.col("pidx") <= end) & (pl.col("pidx") > end - months)
    s = indexed(supply).filter(window).select("station_id", "pidx", "period",
                                              pl.col("kwh").cast(pl.Int64).alias("supply"))
    bad = s.filter(pl.col("supply") <= 0)
    if bad.height:
        r = bad.row(0, named=True)
        raise ValidationError(f"supply {r['supply']} is not positive",
                              where=f"station {r['station_id']} {r['period']}")
    metered = (indexed(history).filter(window)
               .join(stations.select("account_id", "station_id").unique("account_id"),
                     on="account_id", how="inner")
               .group_by("station_id", "pidx").agg(pl.col("kwh").cast(pl.Int64).sum()
                                                  .alias("metered")))
    return (s.join(metered, on=["station_id", "pidx"], how="left")
            .with_columns(pl.col("metered").fill_null(0))
            .with_columns(((pl.col("supply") - pl.col("metered")) / pl.col("supply"))
                          .alias("loss"))
            .sort("station_id", "pidx"))


def station_losses(history: pl.DataFrame, stations: pl.DataFrame, supply: pl.DataFrame,
                   as_of: Period, *, recent: int = 3, baseline: int = 21) -> pl.DataFrame:
    """Station line loss (台区线损) per station, from :func:`station_monthly_loss`:
    ``loss_before`` = the lowest 3-month median of the baseline months (a loss that began
    rising long ago still shows against the months before it), ``loss_now`` = the median of the
    last ``recent`` months, ``rise`` = now − before, ``rise_z`` = rise ÷ the spread (standard
    deviation, at least 0.2 %) of the loss before, ``extra_lost_kwh`` = rise × the median supply
    now (0.01 kWh): the energy a month the station's meters no longer account for. Only months
    ≤ ``as_of``."""
    import polars as pl

    end = as_of.year * 12 + as_of.month - 1
    m = station_monthly_loss(history, stations, supply, as_of, months=recent + baseline)
    m = m.with_columns((pl.col("pidx") > end - recent).alias("now"))
    before = m.filter(~pl.col("now")).group_by("station_id").agg(
        pl.col("loss").sort_by("pidx").rolling_median(window_size=min(3, baseline), min_samples=1)
        .min().alias("loss_before"),
        pl.col("loss").std().alias("loss_spread"),
        pl.len().alias("months_before"))
    now = m.filter(pl.col("now")).group_by("station_id").agg(
        pl.col("loss").median().alias("loss_now"),
        pl.col("supply").median().alias("supply_now"),
        pl.len().alias("months_now"))
    out = now.join(before, on="station_id", how="inner").with_columns(
        (pl.col("loss_now") - pl.col("loss_before")).alias("rise"))
    return out.with_columns(
        (pl.col("rise") / pl.max_horizontal(pl.col("loss_spread").fill_null(0.0), pl.lit(0.002)))
        .alias("rise_z"),
        (pl.max_horizontal(pl.col("rise"), pl.lit(0.0)) * pl.col("supply_now"))
        .alias("extra_lost_kwh"),
    ).select("station_id", "loss_before", "loss_now", "rise", "rise_z", "extra_lost_kwh",
             "supply_now", "months_before", "months_now").sort("station_id")


def score(feats: pl.DataFrame, weights: Weights = WEIGHTS) -> pl.DataFrame:
    """feats + ``score`` (Float64, 0–100) and the signals that fired in words: ``reasons`` (en)
    and ``reasons_zh`` (zh-CN), the same signals in the same order."""
    import polars as pl

    w = weights
    feats = _with_signal_columns(feats)
    # a drop counts only on an occupied profile: a vacant home's 0–3 kWh swing wildly in
    # relative terms and are worth no inspection
    occupied = pl.col("level_before") >= w.occupied_kwh
    sigma = pl.when(occupied).then(pl.min_horizontal(
        pl.max_horizontal(-pl.col("drop_z"), -pl.col("peer_z"), pl.lit(0.0)),
        pl.lit(w.sigma_cap))).otherwise(0.0)
    zero = pl.col("zero_run") >= 2
    # night/day: the valley share fell for ≥ 2 of the recent months, in σ of its own spread or
    # of the class's changes, whichever is larger; whatever the total did
    night_on = occupied & (pl.col("night_months").fill_null(0) >= 2)
    night_sigma = pl.when(night_on).then(pl.min_horizontal(
        pl.max_horizontal(-pl.col("night_z").fill_null(0.0),
                          -pl.col("night_peer_z").fill_null(0.0), pl.lit(0.0)),
        pl.lit(w.sigma_cap))).otherwise(0.0)
    # station line loss: the station's loss rose clearly, and this account's fall covers a share
    # of the energy the station no longer accounts for
    station_on = (occupied
                  & (pl.col("station_rise").fill_null(0.0) >= w.station_min_rise)
                  & (pl.col("station_corr").fill_null(0.0) >= w.station_min_corr)
                  & (pl.col("station_share").fill_null(0.0) > 0)
                  & (pl.col("station_share").fill_null(0.0) >= w.station_min_share))
    station_points = pl.when(station_on).then(pl.col("station_corr") * w.station_points)\
        .otherwise(0.0)
    points = (sigma * w.per_sigma
              + pl.when(occupied).then(pl.col("months_low") * w.sustained).otherwise(0.0)
              + pl.when(zero).then(w.zero_run).otherwise(0.0)
              + pl.when(pl.col("flat_line")).then(w.flat_line).otherwise(0.0)
              + night_sigma * w.night_per_sigma + station_points)
    pct = ((1 - pl.col("drop").exp()) * 100).round(0).cast(pl.Int64)
    share_now = (pl.col("valley_share_now") * 100).round(0).cast(pl.Int64)
    share_before = (pl.col("valley_share_before") * 100).round(0).cast(pl.Int64)
    rise_pp = (pl.col("station_rise") * 100).round(1)
    covers = (pl.col("station_share") * 100).round(0).cast(pl.Int64)
    corr = pl.col("station_corr").round(2)
    fired = [
        ((sigma >= 2) & (pl.col("months_low") >= 2),
         pl.format("sustained drop: {}% below its usual level against similar customers", pct),
         pl.format("用电持续骤降：较同类用户下的常态水平低 {}%", pct)),
        (-pl.col("peer_z") >= 3, pl.lit("unlike similar customers"),
         pl.lit("与同类用户走势不符")),
        (zero, pl.format("{} months at zero on an occupied profile", "zero_run"),
         pl.format("有人居住却连续 {} 个月零电量", "zero_run")),
        (pl.col("flat_line"), pl.lit("flat line: the same reading month after month"),
         pl.lit("电量逐月不变（疑似表计停走或抄表照抄）")),
        (night_sigma >= 2,
         pl.format("night-time share fell: valley {}% of its energy, was {}%", share_now,
                   share_before),
         pl.format("夜间（谷段）用电占比骤降：现为 {}%，此前 {}%", share_now, share_before)),
        (station_on,
         pl.format("station {} line loss up {} points as this account's use fell "
                   "(correlation {}); its fall is {}% of the station's lost energy",
                   "station_id", rise_pp, corr, covers),
         pl.format("所属台区 {} 线损率上升 {} 个百分点，与该户电量下降同步（相关系数 {}）；"
                   "该户下降电量相当于台区新增损失电量的 {}%", "station_id", rise_pp, corr,
                   covers)),
    ]
    reasons = pl.concat_str([pl.when(c).then(en) for c, en, _ in fired], separator="; ",
                            ignore_nulls=True)
    reasons_zh = pl.concat_str([pl.when(c).then(zh) for c, _, zh in fired], separator="；",
                               ignore_nulls=True)
    return feats.with_columns(pl.min_horizontal(points, pl.lit(100.0)).alias("score"),
                              reasons.alias("reasons"), reasons_zh.alias("reasons_zh"))


def _with_signal_columns(feats: pl.DataFrame) -> pl.DataFrame:
    """feats with the night and station columns (null) where a caller's frame lacks them."""
    import polars as pl

    kinds = {"night_months": pl.Int32, "station_id": pl.String}
    absent = [c for c in (*NIGHT_COLUMNS, *STATION_COLUMNS) if c not in feats.columns]
    return feats.with_columns(*[pl.lit(None, dtype=kinds.get(c, pl.Float64)).alias(c)
                                for c in absent]) if absent else feats


def signal_columns(frame: pl.DataFrame, columns: tuple[str, ...]) -> list[str]:
    """The ``columns`` that carry a signal in ``frame``: present with a value somewhere. The
    night and station signals are null where no time-of-use energy or station supply was
    given; the models then learn from (and score on) what there is, so a utility without them
    gets the same forest as before they existed."""
    return [c for c in columns if c in frame.columns and frame[c].null_count() < frame.height]


def isolation_scores(feats: pl.DataFrame, *, seed: int = 0) -> pl.Series:
    """An isolation forest (scikit-learn) on the signals, as 0–1 (higher = more unusual).
    Unsupervised and direction-free: it also finds sudden rises, which the points score does
    not; the two are shown side by side."""
    import numpy as np
    import polars as pl
    from sklearn.ensemble import IsolationForest

    if feats.height < 2:
        return pl.Series("iforest", [0.0] * feats.height, dtype=pl.Float64)
    cols = signal_columns(feats, FOREST_COLUMNS)
    x = feats.select(pl.col(c).cast(pl.Float64).fill_null(0.0).fill_nan(0.0)
                     for c in cols).to_numpy()
    forest = IsolationForest(n_estimators=100, random_state=seed).fit(x)
    raw = -forest.score_samples(x)  # in (0, 1]; higher = shorter paths = more isolated
    return pl.Series("iforest", np.asarray(raw, dtype=np.float64))


#: fewer recorded inspections than this (or only one kind of outcome): no supervised model
MIN_INSPECTIONS = 20


def supervised_scores(train: pl.DataFrame, feats: pl.DataFrame) -> pl.Series | None:
    """Probability of theft learnt from inspection outcomes, or None when there are too few.

    ``train``: the signals of inspected accounts as of the month before each inspection (no
    look-ahead) with ``theft`` (Boolean) — what the inspection found; ``feats``: the signals to
    score (with ``score``). A logistic regression on standardised signals (scikit-learn): few
    labels are the rule in inspection data, and its weights can be read and explained.
    """
    import numpy as np
    import polars as pl
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = train["theft"].cast(pl.Boolean).to_numpy()
    if train.height < MIN_INSPECTIONS or y.all() or not y.any():
        return None
    cols = signal_columns(train, (*FEATURE_COLUMNS, "score"))
    cols = [c for c in cols if c in feats.columns]

    def matrix(frame: pl.DataFrame) -> np.ndarray:
        return frame.select(pl.col(c).cast(pl.Float64).fill_null(0.0).fill_nan(0.0)
                            for c in cols).to_numpy()

    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced",
                                                               max_iter=1000))
    model.fit(matrix(train), y)
    return pl.Series("supervised", model.predict_proba(matrix(feats))[:, 1], dtype=pl.Float64)


def evaluate(scores: pl.Series, truth: pl.Series, top_share: float = 0.01) -> dict[str, float]:
    """AUC and precision in the top ``top_share`` of ``scores`` against ``truth`` (Boolean);
    ties broken by order, so the top is exactly ⌈share × n⌉ accounts."""
    import math

    import numpy as np
    from sklearn.metrics import roc_auc_score

    y = truth.cast(bool).to_numpy()
    s = scores.cast(float).fill_null(0.0).to_numpy()
    k = max(1, math.ceil(top_share * len(s)))
    top = np.argsort(-s, kind="stable")[:k]
    if not 0 < y.sum() < len(y):
        raise ValidationError("AUC needs both thieves and honest accounts in the truth",
                              where=f"{int(y.sum())} positives of {len(y)}")
    auc = float(roc_auc_score(y, s))
    return {"n": float(len(s)), "positives": float(y.sum()), "auc": auc,
            "precision_top": float(y[top].mean()), "top": float(k)}
