"""Vectorised parsing of meter-data text: decimal quantities and instants.

Every function here works on whole columns (Polars expressions), so a million rows are parsed in
a few Rust passes and bad values become reasons on their rows, never exceptions. The reason of a
row is the first rule it breaks: a frame carries ``_reason`` (a stable code such as
``timestamp_without_offset``) and ``_detail`` (what was wrong, for a person), both null while the
row is still good.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import polars as pl

REASON = "_reason"
DETAIL = "_detail"

#: instants before this year or from this year on are typos, not meter data
MIN_YEAR = 1990
MAX_YEAR = 2100

_DECIMAL = r"^([+-]?)([0-9]*)(?:\.([0-9]*))?$"
# a date and a time (seconds optional) with the separator already normalised to "T"
_NAIVE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?$"
_OFFSET = r"[+-][0-9]{2}(:?[0-9]{2})$"


def start_reasons(frame: pl.DataFrame) -> pl.DataFrame:
    """Add empty ``_reason``/``_detail`` columns (or keep those already there)."""
    import polars as pl

    cols = []
    if REASON not in frame.columns:
        cols.append(pl.lit(None, pl.String).alias(REASON))
    if DETAIL not in frame.columns:
        cols.append(pl.lit(None, pl.String).alias(DETAIL))
    return frame.with_columns(cols) if cols else frame


def flag(frame: pl.DataFrame, condition: pl.Expr, reason: str,
         detail: pl.Expr | str) -> pl.DataFrame:
    """Give ``reason`` to the still-good rows where ``condition`` holds (null counts as false)."""
    import polars as pl

    hit = pl.col(REASON).is_null() & condition.fill_null(False)
    det = pl.lit(detail) if isinstance(detail, str) else detail
    return frame.with_columns(
        pl.when(hit).then(pl.lit(reason)).otherwise(pl.col(REASON)).alias(REASON),
        pl.when(hit).then(det.cast(pl.String)).otherwise(pl.col(DETAIL)).alias(DETAIL),
    )


def quoted(name: str) -> pl.Expr:
    """The column's text for a detail message: 'value' (or 'empty')."""
    import polars as pl

    col = pl.col(name).cast(pl.String)
    return (pl.when(col.is_null() | (col == "")).then(pl.lit("empty"))
            .otherwise(pl.lit("'") + col.str.slice(0, 60) + pl.lit("'")))


def _decimal_units(frame: pl.DataFrame, source: str, target: str, *, places: int,
                   max_int_digits: int, allow_negative: bool) -> pl.DataFrame:
    """Parse the decimal text in ``source`` into integer units of 10**-places in ``target``.

    Exact: "1.25" with places=3 is 1250, never a float. Trailing zeros do not count as places
    ("1.2500" is fine); a genuine fourth place is refused (``too_many_decimals``) rather than
    rounded away. Scientific notation and thousands separators are refused (``bad_number``).
    """
    import polars as pl

    dtype = frame.schema[source]
    text = pl.col(source)
    if dtype != pl.String:
        text = text.cast(pl.String)
    parts = text.str.strip_chars().str.extract_groups(_DECIMAL)
    frame = frame.with_columns(parts.alias("_dec"))
    sign = pl.col("_dec").struct.field("1")
    whole = pl.col("_dec").struct.field("2").str.strip_chars_start("0")
    frac = pl.col("_dec").struct.field("3").fill_null("").str.strip_chars_end("0")
    raw_whole = pl.col("_dec").struct.field("2")
    raw_frac = pl.col("_dec").struct.field("3").fill_null("")
    frame = flag(frame, pl.col(source).is_null() | (text.str.strip_chars() == ""),
                 "missing_value", pl.lit(f"{source} is empty"))
    # group 2 matches (maybe empty) whenever the pattern does: null means no match
    frame = flag(frame, raw_whole.is_null()
                 | ((raw_whole.str.len_bytes() + raw_frac.str.len_bytes()) == 0),
                 "bad_number", pl.lit(f"{source} is not a decimal number: ") + quoted(source))
    frame = flag(frame, frac.str.len_bytes() > places, "too_many_decimals",
                 pl.lit(f"{source} has more than {places} decimal places: ") + quoted(source))
    frame = flag(frame, whole.str.len_bytes() > max_int_digits, "value_out_of_range",
                 pl.lit(f"{source} is absurdly large: ") + quoted(source))
    magnitude = (pl.when(whole == "").then(pl.lit(0, pl.Int64))
                 .otherwise(whole.str.slice(0, max_int_digits).cast(pl.Int64, strict=False))
                 * (10 ** places)
                 + pl.when(frac == "").then(pl.lit(0, pl.Int64))
                 .otherwise(frac.str.slice(0, places).str.pad_end(places, "0")
                            .cast(pl.Int64, strict=False)))
    value = pl.when(sign == "-").then(-magnitude).otherwise(magnitude)
    frame = frame.with_columns(
        pl.when(pl.col(REASON).is_null()).then(value).otherwise(None).alias(target))
    if not allow_negative:
        frame = flag(frame, pl.col(target) < 0, "negative_value",
                     pl.lit(f"{source} must not be negative: ") + quoted(source))
    return frame.drop("_dec")


def _instants(frame: pl.DataFrame, source: str, target: str,
              tz: str | None = None) -> pl.DataFrame:
    """ISO 8601 text with a UTC offset → ``Datetime("us", "UTC")`` in ``target``; with ``tz``,
    a time without an offset is that zone's local time (see :func:`parse_instants`).

    Accepted: ``2026-03-01T08:15:00+08:00``, a space instead of ``T``, ``+0800``, ``+08``,
    ``Z``, fractional seconds, no seconds. A time without an offset is ambiguous (local time of
    which zone?) and is refused with ``timestamp_without_offset``. Typed Parquet columns pass
    straight through when they carry a zone; a zoneless Datetime column is refused the same way.
    """
    import polars as pl

    dtype = frame.schema[source]
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None and tz is not None:
            local = pl.col(source).dt.cast_time_unit("us")
            frame = frame.with_columns(_from_local(local, tz).alias(target))
            frame = flag(frame, pl.col(source).is_null(), "missing_value", f"{source} is empty")
            frame = _flag_local(frame, source, target, tz, pl.col(source).is_not_null())
        elif dtype.time_zone is None:
            frame = frame.with_columns(pl.lit(None, pl.Datetime("us", "UTC")).alias(target))
            return flag(frame, pl.lit(True), "timestamp_without_offset",
                        pl.lit(f"{source} is a timestamp without a time zone: ")
                        + pl.col(source).cast(pl.String))
        else:
            # a zoned timestamp holds UTC instants already (the zone only says how to show
            # them): relabel, no per-row zone arithmetic
            frame = frame.with_columns(
                pl.col(source).to_physical().cast(pl.Datetime(dtype.time_unit, "UTC"))
                .dt.cast_time_unit("us").alias(target))
            frame = flag(frame, pl.col(source).is_null(), "missing_value", f"{source} is empty")
    else:
        text = pl.col(source) if dtype == pl.String else pl.col(source).cast(pl.String)
        norm = (text.str.strip_chars()
                .str.replace(r"^([0-9]{4})[/-]([0-9]{2})[/-]([0-9]{2})[T ]+", "${1}-${2}-${3}T")
                .str.replace(r"\s*[Zz]$", "+00:00")
                .str.replace(r"\s+([+-][0-9]{2})", "${1}")
                .str.replace(r"([T:][0-9]{2}[+-][0-9]{2})$", "${1}:00"))
        frame = frame.with_columns(norm.alias("_tsnorm"))
        has_offset = pl.col("_tsnorm").str.contains(_OFFSET)
        parsed = pl.coalesce(
            pl.col("_tsnorm").str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False,
                                          time_unit="us", time_zone="UTC"),
            pl.col("_tsnorm").str.to_datetime("%Y-%m-%dT%H:%M%z", strict=False,
                                          time_unit="us", time_zone="UTC"),
        )
        naive = ~has_offset & pl.col("_tsnorm").str.contains(_NAIVE)
        if tz is None:
            frame = frame.with_columns(
                pl.when(has_offset).then(parsed).otherwise(None).alias(target))
        else:
            local = pl.coalesce(
                pl.col("_tsnorm").str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False,
                                              time_unit="us"),
                pl.col("_tsnorm").str.to_datetime("%Y-%m-%dT%H:%M", strict=False,
                                              time_unit="us"))
            frame = frame.with_columns(
                pl.when(has_offset).then(parsed).when(naive).then(_from_local(local, tz))
                .otherwise(None).alias(target))
        frame = flag(frame, text.is_null() | (text.str.strip_chars() == ""), "missing_value",
                     f"{source} is empty")
        if tz is None:
            frame = flag(frame, naive, "timestamp_without_offset",
                         pl.lit(f"{source} has no UTC offset (write e.g. +08:00): ")
                         + quoted(source))
        else:
            frame = _flag_local(frame, source, target, tz, naive)
        frame = frame.drop("_tsnorm")
    frame = flag(frame, pl.col(target).is_null(), "bad_timestamp",
                 pl.lit(f"{source} is not an ISO 8601 instant: ") + quoted(source))
    from datetime import UTC, datetime

    lo, hi = datetime(MIN_YEAR, 1, 1, tzinfo=UTC), datetime(MAX_YEAR, 1, 1, tzinfo=UTC)
    frame = flag(frame, (pl.col(target) < lo) | (pl.col(target) >= hi), "timestamp_out_of_range",
                 pl.lit(f"{source} is not a plausible year: ") + quoted(source))
    return frame


def _from_local(local: pl.Expr, tz: str) -> pl.Expr:
    """A zone's wall-clock time → the UTC instant; null where the wall clock is ambiguous (the
    hour repeated when daylight saving time ends) or does not exist (the hour skipped)."""
    return (local.dt.replace_time_zone(tz, ambiguous="null", non_existent="null")
            .dt.convert_time_zone("UTC"))


def _flag_local(frame: pl.DataFrame, source: str, target: str, tz: str,
                naive: pl.Expr) -> pl.DataFrame:
    """A local time that names no single instant in ``tz``: rejected with its reason (a reads
    file of a daylight-saving zone needs offsets for that hour)."""
    import polars as pl

    plain = (pl.col(source) if frame.schema[source] == pl.String
             else pl.col(source).cast(pl.String))
    parsed_local = plain.str.strip_chars().str.replace(" ", "T").str.to_datetime(
        strict=False, time_unit="us") if frame.schema[source] == pl.String else \
        pl.col(source).dt.cast_time_unit("us")
    unresolved = naive & pl.col(target).is_null() & parsed_local.is_not_null()
    return flag(frame, unresolved, "ambiguous_local_time",
                pl.lit(f"{source} is not one instant in {tz} (a daylight saving change; write "
                       "its UTC offset): ") + quoted(source))


def require_text(frame: pl.DataFrame, name: str, *, max_len: int,
                 label: str | None = None) -> pl.DataFrame:
    """A required identifier: present, not too long, no control characters (checked once per
    distinct value: meter ids repeat in every chunk)."""
    def check(f: pl.DataFrame, s: str, t: str) -> pl.DataFrame:
        return _require_text(f, s, max_len=max_len, label=label)

    return _via_unique(frame, name, None, check)


def _require_text(frame: pl.DataFrame, name: str, *, max_len: int,
                  label: str | None = None) -> pl.DataFrame:
    import polars as pl

    label = label or name
    col = pl.col(name)
    frame = flag(frame, col.is_null() | (col == ""), "missing_value", f"{label} is empty")
    frame = flag(frame, col.str.len_chars() > max_len, "value_too_long",
                 pl.lit(f"{label} is longer than {max_len} characters: ") + quoted(name))
    return flag(frame, col.str.contains(r"[\x00-\x1f\x7f]"), "bad_characters",
                f"{label} contains control characters")


#: below this many rows, parse every row; above, parse each distinct text once
_UNIQUE_FROM = 5_000


def _via_unique(frame: pl.DataFrame, source: str, target: str | None,
                parse: Any) -> pl.DataFrame:
    """Parse each distinct value of ``source`` once and join the result back.

    Meter data repeats itself: a chunk of a million intervals has a few dozen distinct
    timestamps and a few thousand distinct kWh texts, so parsing the distinct values is an order
    of magnitude cheaper than parsing every row. A row keeps an earlier reason if it has one.
    """
    import polars as pl

    if frame.height < _UNIQUE_FROM:
        return cast("pl.DataFrame", parse(frame, source, target))
    uniq = frame.select(pl.col(source)).unique()
    done = parse(start_reasons(uniq), source, target).select(
        source, *([target] if target else []), pl.col(REASON).alias("_r2"),
        pl.col(DETAIL).alias("_d2"))
    frame = frame.join(done, on=source, how="left", nulls_equal=True, maintain_order="left")
    keep = pl.col(REASON).is_not_null()
    return frame.with_columns(
        pl.when(keep).then(pl.col(REASON)).otherwise(pl.col("_r2")).alias(REASON),
        pl.when(keep).then(pl.col(DETAIL)).otherwise(pl.col("_d2")).alias(DETAIL),
    ).drop("_r2", "_d2")


def parse_decimal_units(frame: pl.DataFrame, source: str, target: str, *, places: int,
                        max_int_digits: int, allow_negative: bool) -> pl.DataFrame:
    """Parse the decimal text in ``source`` into integer units of 10**-places in ``target``.

    Exact: "1.25" with places=3 is 1250, never a float. Trailing zeros do not count as places
    ("1.2500" is fine); a genuine fourth place is refused (``too_many_decimals``) rather than
    rounded away. Scientific notation and thousands separators are refused (``bad_number``).
    """
    import polars as pl

    dtype = frame.schema[source]
    if isinstance(dtype, pl.Decimal) or dtype == pl.Float64 or dtype.is_integer():
        # typed Parquet columns: exact integer arithmetic on the whole column, no text
        return _typed_units(frame, source, target, places=places,
                            max_int_digits=max_int_digits, allow_negative=allow_negative)

    def parse(f: pl.DataFrame, s: str, t: str) -> pl.DataFrame:
        return _decimal_units(f, s, t, places=places, max_int_digits=max_int_digits,
                              allow_negative=allow_negative)

    return _via_unique(frame, source, target, parse)


#: a float is taken as a decimal with ``places`` places when ``x·10^places`` lies this close
#: (relative) to a whole number of units — float64 carries ~16 significant digits, so a value
#: written from a 3-place decimal is off by ~1e-16 relative, a genuine 4th place by far more
FLOAT_RELATIVE_TOLERANCE = 1e-9
#: … and never further than this many units (a 4th place is at least 0.1 unit away)
FLOAT_ABSOLUTE_TOLERANCE = 1e-2


def _typed_units(frame: pl.DataFrame, source: str, target: str, *, places: int,
                 max_int_digits: int, allow_negative: bool) -> pl.DataFrame:
    """Typed numbers → integer units of 10**-places, exactly, with the text path's reasons.

    - Decimal (Parquet ``decimal128(p, s)``): the unscaled integer is scaled by a power of ten;
      a scale above ``places`` is accepted only when the extra digits are zeros
      (``too_many_decimals`` otherwise) — never rounded.
    - Float64: ``round(x·10^places)`` when ``x·10^places`` is within
      ``FLOAT_RELATIVE_TOLERANCE`` (relative, and ``FLOAT_ABSOLUTE_TOLERANCE`` absolute) of that
      whole number, else ``too_many_decimals``; NaN and infinities are ``bad_number``.
    - Integers: whole kWh.
    """
    import polars as pl

    dtype = frame.schema[source]
    col = pl.col(source)
    limit = 10 ** (max_int_digits + places)  # units from here on have too many integer digits
    frame = flag(frame, col.is_null(), "missing_value", pl.lit(f"{source} is empty"))
    if isinstance(dtype, pl.Decimal):
        raw = col.to_physical()  # Int128: the unscaled value
        scale = dtype.scale or 0
        if scale <= places:
            units = raw * (10 ** (places - scale))
        else:
            step = 10 ** (scale - places)
            frame = flag(frame, raw % step != 0, "too_many_decimals",
                         pl.lit(f"{source} has more than {places} decimal places: ")
                         + quoted(source))
            units = raw // step
        frame = flag(frame, units.abs() >= limit, "value_out_of_range",
                     pl.lit(f"{source} is absurdly large: ") + quoted(source))
        value = units
    elif dtype == pl.Float64:
        scaled = col * float(10 ** places)
        whole = scaled.round(0)
        frame = flag(frame, ~col.is_finite(), "bad_number",
                     pl.lit(f"{source} is not a decimal number: ") + quoted(source))
        tolerance = pl.min_horizontal(whole.abs() * FLOAT_RELATIVE_TOLERANCE,
                                      pl.lit(FLOAT_ABSOLUTE_TOLERANCE))
        frame = flag(frame, (scaled - whole).abs() > tolerance, "too_many_decimals",
                     pl.lit(f"{source} has more than {places} decimal places: ")
                     + quoted(source))
        frame = flag(frame, whole.abs() >= float(limit), "value_out_of_range",
                     pl.lit(f"{source} is absurdly large: ") + quoted(source))
        value = whole
    else:
        big = col.cast(pl.Int128, strict=False)
        frame = flag(frame, big.abs() >= 10 ** max_int_digits, "value_out_of_range",
                     pl.lit(f"{source} is absurdly large: ") + quoted(source))
        value = big * (10 ** places)
    frame = frame.with_columns(pl.when(pl.col(REASON).is_null()).then(value)
                               .otherwise(None).cast(pl.Int64).alias(target))
    if not allow_negative:
        frame = flag(frame, pl.col(target) < 0, "negative_value",
                     pl.lit(f"{source} must not be negative: ") + quoted(source))
    return frame


def parse_instants(frame: pl.DataFrame, source: str, target: str,
                   tz: str | None = None) -> pl.DataFrame:
    """ISO 8601 text with a UTC offset → ``Datetime("us", "UTC")`` in ``target``.

    With ``tz`` (a file import's ``--timezone``, by default the business zone Asia/Shanghai),
    a time without an offset — most hand-made reads files in China carry local times — is read
    as that zone's wall clock; one that is ambiguous or skipped in the zone (a daylight saving
    change) is rejected as ``ambiguous_local_time``. Without ``tz`` it is rejected as
    ``timestamp_without_offset`` (live sources always deliver instants).

    Accepted: ``2026-03-01T08:15:00+08:00``, a space instead of ``T``, ``+0800``, ``+08``,
    ``Z``, fractional seconds, no seconds. A time without an offset is ambiguous (local time of
    which zone?) and is refused with ``timestamp_without_offset``. Typed Parquet columns pass
    straight through when they carry a zone; a zoneless Datetime column is refused the same way.
    """
    import polars as pl

    def parse(f: pl.DataFrame, s: str, t: str) -> pl.DataFrame:
        return _instants(f, s, t, tz)

    if isinstance(frame.schema[source], pl.Datetime):
        return parse(frame, source, target)  # no text to parse: one cheap pass
    return _via_unique(frame, source, target, parse)


def business_day(frame: pl.DataFrame, source: str, target: str,
                 tz: str = "Asia/Shanghai") -> pl.DataFrame:
    """The business date (``tz``) of the instants in ``source``, computed per distinct instant."""
    import polars as pl

    def parse(f: pl.DataFrame, s: str, t: str) -> pl.DataFrame:
        return f.with_columns(pl.col(s).dt.convert_time_zone(tz).dt.date().alias(t))

    if frame.height < _UNIQUE_FROM:
        return parse(frame, source, target)
    uniq = frame.select(pl.col(source)).unique()
    return frame.join(parse(uniq, source, target), on=source, how="left", nulls_equal=True,
                      maintain_order="left")
