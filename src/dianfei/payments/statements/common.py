"""What every statement parser shares: the frame it returns, the typed error it raises, and the
vectorised field conversions (yuan text → fen, Beijing time text → UTC instants).

Why vectorised: a busy channel's daily statement (对账单) can run to a million lines; converting
field by field in Python would cost more than all the matching. Each parser splits the file into
lines once, then validates and converts whole columns with Polars expressions, and reports every
bad line with its number and field — never a silent skip.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from dianfei.core.errors import ValidationError

#: columns of every parsed statement frame, in this order
STATEMENT_SCHEMA: dict[str, Any] = {
    "channel": pl.String,
    #: the channel's id of the payment (for a refund line: the id of the payment refunded)
    "transaction_id": pl.String,
    #: our payment order number (out_trade_no), when the channel echoes it
    "order_no": pl.String,
    #: the account when the file names it (bank and agent files); null for Alipay/WeChat
    "account_id": pl.String,
    #: fen, always positive; the direction is in ``kind``
    "amount": pl.Int64,
    #: payment or refund
    "kind": pl.String,
    #: when the customer paid (refund: when the refund was made), UTC
    "paid_at": pl.Datetime("us", "UTC"),
    #: the channel's service charge in fen: positive when charged, negative when given back
    "fee": pl.Int64,
    #: the line number in the source file (1-based), for every message about the line
    "line": pl.Int64,
    #: the channel's refund id on refund lines (null on payments)
    "refund_id": pl.String,
}

#: the most findings a message lists (all of them stay on the exception)
_SHOWN = 20


@dataclass(frozen=True)
class Finding:
    """One problem in a file: where it is and what is wrong (a finding is data, not a crash)."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, {self.field}: {self.message}"


class StatementError(ValidationError):
    """A statement or bank file cannot be used. Names the file and every bad line and field.

    Raised before anything is posted: a file is taken whole or not at all.
    """

    code = "statement_invalid"

    def __init__(self, file: str, findings: list[Finding]) -> None:
        self.file = file
        self.findings = findings
        shown = "; ".join(str(f) for f in findings[:_SHOWN])
        more = f" (and {len(findings) - _SHOWN} more)" if len(findings) > _SHOWN else ""
        super().__init__(f"{shown}{more}", where=file)


@dataclass(frozen=True)
class SettlementCheck:
    """The file's own totals (汇总/trailer) against the sum of its detail lines."""

    #: each compared figure: name → (declared in the file, computed from the details)
    figures: dict[str, tuple[int, int]]

    @property
    def ok(self) -> bool:
        return all(declared == computed for declared, computed in self.figures.values())

    @property
    def mismatches(self) -> list[str]:
        return [name for name, (d, c) in self.figures.items() if d != c]

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "mismatches": self.mismatches,
            "figures": {k: {"declared": d, "computed": c} for k, (d, c) in self.figures.items()},
        }


@dataclass
class Statement:
    """A parsed statement: one line per row of ``frame`` (see STATEMENT_SCHEMA)."""

    channel: str
    file: str
    frame: pl.DataFrame
    check: SettlementCheck
    #: header facts the file states (account, merchant id, period, batch id …)
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def payments(self) -> pl.DataFrame:
        return self.frame.filter(pl.col("kind") == "payment")

    @property
    def refunds(self) -> pl.DataFrame:
        return self.frame.filter(pl.col("kind") == "refund")


def empty_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=STATEMENT_SCHEMA)


def read_bytes(source: str | Path | bytes, name: str | None = None) -> tuple[bytes, str]:
    """The file's bytes and the name to use in messages."""
    if isinstance(source, bytes):
        return source, name or "<statement>"
    path = Path(source)
    try:
        return path.read_bytes(), name or str(path)
    except OSError as exc:
        raise ValidationError(f"cannot read the statement file: {exc.strerror}", where=str(path)) from None


#: the most a zipped statement may unzip to: a busy channel's daily bill is tens of MB; a zip
#: bomb (a few kB that unzip to GBs) is refused before it fills memory
MAX_UNZIPPED = 512 << 20


def unzip_member(data: bytes, file: str, *, prefer: str, avoid: str) -> tuple[bytes, str]:
    """The member of a zip archive holding the detail file (Alipay ships its bill zipped).

    Member names are GBK bytes without the UTF-8 flag in Alipay archives, which Python reads as
    cp437; they are decoded back so the Chinese suffix (业务明细 vs 业务明细(汇总)) can be told apart.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise StatementError(file, [Finding(0, "file", "not a readable zip archive")]) from None
    members = []
    for info in archive.infolist():
        if info.is_dir():
            continue
        name = info.filename
        if not info.flag_bits & 0x800:
            with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
                name = name.encode("cp437").decode("gb18030")
        members.append((name, info))
    chosen = [m for m in members if prefer in m[0] and avoid not in m[0]] or (
        members if len(members) == 1 else []
    )
    if len(chosen) != 1:
        names = ", ".join(m[0] for m in members) or "nothing"
        raise StatementError(file, [Finding(0, "file", f"cannot tell the detail file in the zip ({names})")])
    name, info = chosen[0]
    if info.file_size > MAX_UNZIPPED:
        raise StatementError(file, [Finding(0, name, f"{info.file_size:,} bytes unzipped, more than the "
                                                      f"{MAX_UNZIPPED:,} a statement may have")])
    try:
        with archive.open(info) as member:
            # the size in the directory is the sender's word: read at most one byte past the cap
            body = member.read(MAX_UNZIPPED + 1)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise StatementError(file, [Finding(0, name, f"damaged zip member: {exc}")]) from None
    except NotImplementedError:  # how zipfile says a member uses a compression it cannot read
        raise StatementError(file, [Finding(0, name, f"compression method {info.compress_type} "
                                                      "is not supported (use deflate)")]) from None
    if len(body) > MAX_UNZIPPED:
        raise StatementError(file, [Finding(0, name, f"unzips to more than the {MAX_UNZIPPED:,} bytes "
                                                      "a statement may have (the archive understates it)")])
    return body, f"{file}!{name}"


def decode_lines(data: bytes, file: str, encoding: str = "auto") -> pl.Series:
    """Bytes → the file's lines as a Polars string series (line i is row i - 1).

    ``auto``: UTF-8 (with or without BOM) when the bytes are valid UTF-8, else GB18030 (a superset
    of GBK, what Chinese banks and Alipay write). UTF-8 is validated and split in Rust without a
    Python string (a million-line bill is 200 MB). A byte sequence valid in no candidate encoding
    is reported with its line number; a file decoded with the wrong one shows up as unknown
    columns, which the parsers report.
    """
    encodings = ["utf-8", "gb18030"] if encoding == "auto" else [encoding]
    last: UnicodeDecodeError | None = None
    for enc in encodings:
        if enc.replace("-", "").replace("_", "").lower() in ("utf8", "utf8sig"):
            try:
                text = pl.Series("raw", [data], dtype=pl.Binary).cast(pl.String)
            except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError):
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    last = exc if last is None or exc.start > last.start else last
                continue
        else:
            try:
                text = pl.Series("raw", [data.decode(enc).encode("utf-8")], dtype=pl.Binary).cast(pl.String)
            except UnicodeDecodeError as exc:
                # report the encoding that read furthest: the likeliest one
                last = exc if last is None or exc.start > last.start else last
                continue
            except LookupError:
                raise ValidationError(f"unknown encoding {enc!r}") from None
        lines = text.str.split("\n").explode().str.strip_suffix("\r")
        if lines.len() and (first := lines[0]) is not None and first.startswith("\ufeff"):
            lines = lines.scatter(0, first[1:])
        return lines.rename("raw")
    assert last is not None
    line = data.count(b"\n", 0, last.start) + 1
    raise StatementError(
        file, [Finding(line, "encoding", f"bytes not valid {'/'.join(encodings)} at offset {last.start}")]
    )


def yuan_units(col: pl.Expr, places: int = 2) -> pl.Expr:
    """Decimal yuan text ("12.34", "-0.05940") → integer units of 10^-places yuan, exactly.

    Null where the text is not a decimal with at most ``places`` decimals (the caller reports it).
    Integers only: no float ever holds an amount.
    """
    groups = col.str.extract_groups(rf"^([+-]?)(\d{{1,13}})(?:\.(\d{{0,{places}}}))?$")
    negative = groups.struct.field("1") == "-"
    whole = groups.struct.field("2").cast(pl.Int64, strict=False)
    frac_text = groups.struct.field("3").fill_null("").str.pad_end(places, "0")
    frac = frac_text.cast(pl.Int64, strict=False).fill_null(0)
    units = whole * (10**places) + frac
    return pl.when(whole.is_null()).then(None).when(negative).then(-units).otherwise(units).cast(pl.Int64)


def yuan_to_fen(col: pl.Expr, places: int = 2) -> pl.Expr:
    """Decimal yuan text → integer fen; with more than two places, rounded half-up (away from
    zero), as WeChat's five-place service charges need."""
    units = yuan_units(col, places)
    if places <= 2:
        scaled: pl.Expr = units * (10 ** (2 - places))
        return scaled
    divisor = 10 ** (places - 2)
    magnitude = (units.abs() + divisor // 2) // divisor
    return pl.when(units < 0).then(-magnitude).otherwise(magnitude).cast(pl.Int64)


def beijing_to_utc(col: pl.Expr, fmt: str = "%Y-%m-%d %H:%M:%S") -> pl.Expr:
    """Local Beijing time text (what every Chinese channel writes) → a UTC instant; null if bad."""
    return (
        col.str.strptime(pl.Datetime("us"), fmt, strict=False)
        .dt.replace_time_zone("Asia/Shanghai")
        .dt.convert_time_zone("UTC")
    )


def collect_findings(
    frame: pl.DataFrame, checks: list[tuple[str, pl.Expr, str]], line_col: str = "line"
) -> list[Finding]:
    """Evaluate (field, bad-row predicate, message) checks over the whole frame at once."""
    found: list[Finding] = []
    for name, bad, message in checks:
        rows = (
            frame.filter(bad).select(line_col, pl.col(name).cast(pl.String).alias("_v"))
            if name in frame.columns
            else frame.filter(bad).select(line_col, pl.lit(None).alias("_v"))
        )
        for line, value in rows.head(200).iter_rows():
            shown = "" if value is None else f" (got {value[:40]!r})"
            found.append(Finding(int(line), name, message + shown))
    found.sort(key=lambda f: f.line)
    return found
