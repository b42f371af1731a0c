"""Streaming CSV reading with exact line numbers, for imports of any size.

Why not Polars' or PyArrow's CSV readers directly: an import must name the line of every bad
row, reject a line with the wrong number of fields without losing the rest, and say which byte of
which line is not valid UTF-8/GBK. Those readers either stop at the first bad line or forget
where a row came from. So this module reads the file in blocks of whole lines (bounded memory),
decodes each block itself (line and byte of a bad byte are known), and splits the lines with
vectorised Polars string operations; only lines with quotes that a regular expression cannot
split go through Python's ``csv`` module.

A record is one line: a quoted field may contain commas but not a line break. Blank lines are
not data rows (only spaces, tabs or a carriage return; they are skipped and keep
their line numbers). The header is line 1.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from dianfei.core.errors import ValidationError

if TYPE_CHECKING:
    import polars as pl

#: header names dropped from input: a ``FILE.rejected.csv`` can be fixed and imported again
RESERVED = ("line", "reason", "detail")
ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "gb18030", "gb2312": "gb18030",
             "gb18030": "gb18030"}
DEFAULT_CHUNK_BYTES = 32 << 20


def codec_for(encoding: str) -> str:
    """``--encoding`` → Python codec. GBK files are decoded as GB18030, its superset, so the
    odd character outside GBK (e.g. the euro sign some exporters write) still decodes."""
    try:
        return ENCODINGS[encoding.strip().lower()]
    except KeyError:
        raise ValidationError(f"--encoding must be utf-8 or gbk, got {encoding!r}") from None


@dataclass
class CsvFile:
    """One CSV file opened for streaming: its header, then chunks of rows."""

    path: Path
    encoding: str = "utf-8"
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    header: list[str] = field(default_factory=list)
    _raw_header: list[str] = field(default_factory=list)
    _sha: hashlib._Hash = field(default_factory=hashlib.sha256)
    _done: bool = False

    def sha256(self) -> str:
        """The file's sha256 (complete once every chunk was read)."""
        assert self._done, "sha256 is known only after the whole file was read"
        return self._sha.hexdigest()

    def open(self) -> BinaryIO:
        try:
            return self.path.open("rb")
        except OSError as exc:
            raise ValidationError(f"cannot read {self.path}: {exc.strerror}") from None

    def chunks(self) -> Iterator[pl.DataFrame]:
        """Frames of at most about ``chunk_bytes`` of text: the header's columns as stripped
        strings, ``line``, ``_raw`` (the line's text) and ``_reason``/``_detail`` set on lines
        with the wrong number of fields."""
        codec = codec_for(self.encoding)
        with self.open() as fh:
            first = True
            carry = b""
            line_no = 1  # number of the first line in the next block
            offset = 0  # file offset of the next block
            while True:
                data = fh.read(self.chunk_bytes)
                self._sha.update(data)
                eof = not data
                block = carry + data
                if first:
                    if block.startswith(codecs.BOM_UTF8):
                        block = block[3:]
                        offset += 3
                    cut = block.find(b"\n")
                    if cut < 0 and not eof:
                        carry = block
                        continue
                    head = block if cut < 0 else block[:cut + 1]
                    self._read_header(self._decode(head, codec, 1, offset))
                    block = b"" if cut < 0 else block[cut + 1:]
                    offset += len(head)
                    line_no = 2
                    first = False
                if not eof:
                    cut = block.rfind(b"\n")
                    if cut < 0:
                        carry = block
                        continue
                    carry = block[cut + 1:]
                    block = block[:cut + 1]
                else:
                    carry = b""
                if block:
                    lines = _lines(self._decode(block, codec, line_no, offset))
                    frame = self._split(lines, line_no)
                    line_no += len(lines)
                    offset += len(block)
                    if frame.height:
                        yield frame
                if eof:
                    break
            if first:
                raise ValidationError(f"{self.path}: the file is empty (a header row is needed)")
        self._done = True

    def _decode(self, block: bytes, codec: str, line_no: int, offset: int) -> str:
        try:
            return block.decode(codec)
        except UnicodeDecodeError as exc:
            before = block[:exc.start]
            line = line_no + before.count(b"\n")
            col = exc.start - (before.rfind(b"\n") + 1) + 1
            bad = block[exc.start:exc.start + 4].hex(" ")
            hint = ("; is it GBK? use --encoding gbk" if codec == "utf-8"
                    else "; is it UTF-8? use --encoding utf-8")
            raise ValidationError(
                f"{self.path}: line {line}, byte {col} (file offset {offset + exc.start}): "
                f"not valid {self.encoding} (bytes {bad}){hint}") from None

    def _read_header(self, text: str) -> None:
        line = text.rstrip("\r\n")
        names = next(csv.reader([line]), [])
        names = [n.strip().lstrip("\ufeff").strip().lower() for n in names]
        if not any(names):
            raise ValidationError(f"{self.path}: line 1 must be the header row, got {line[:80]!r}")
        seen = set()
        for n in names:
            if n and n in seen:
                raise ValidationError(f"{self.path}: column {n!r} appears twice in the header")
            seen.add(n)
        self._raw_header = names
        self.header = [n for n in names if n and n not in RESERVED and not n.startswith("_")]

    def _split(self, lines: pl.Series, first_line: int) -> pl.DataFrame:
        import polars as pl

        names = self._raw_header
        n = len(names)
        frame = pl.DataFrame({
            "line": pl.int_range(first_line, first_line + len(lines), dtype=pl.Int64, eager=True),
            "_raw": lines.str.strip_chars_end("\r"),
        }).filter(pl.col("_raw").str.strip_chars(" \t\r") != "")
        quoted = pl.col("_raw").str.contains('"', literal=True)
        plain = frame.filter(~quoted)
        fancy = frame.filter(quoted)

        count = pl.col("_raw").str.count_matches(",", literal=True) + 1
        plain = plain.with_columns(count.alias("_n"))
        parts = [plain.filter(pl.col("_n") == n).select(
            "line", "_raw",
            pl.col("_raw").str.split_exact(",", n - 1).struct.rename_fields(
                [f"_f{i}" for i in range(n)]).alias("_s"),
        ).unnest("_s")]
        wrong = plain.filter(pl.col("_n") != n)
        if wrong.height:
            parts.append(wrong.select(
                "line", "_raw",
                *[pl.col("_raw").str.split(",").list.get(i, null_on_oob=True).alias(f"_f{i}")
                  for i in range(n)],
                pl.lit("wrong_field_count").alias("_reason"),
                (pl.lit(f"expected {n} fields, got ") + pl.col("_n").cast(pl.String))
                .alias("_detail"),
            ))
        if fancy.height:
            parts.extend(self._split_quoted(fancy, n))
        out = pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]
        if "_reason" not in out.columns:
            out = out.with_columns(pl.lit(None, pl.String).alias("_reason"),
                                   pl.lit(None, pl.String).alias("_detail"))
        cols = [pl.col(f"_f{i}").str.strip_chars().alias(name)
                for i, name in enumerate(names) if name in self.header]
        if len(parts) > 1:  # one part is in line order already
            out = out.sort("line")
        return out.select("line", *cols, "_raw", "_reason", "_detail")

    def _split_quoted(self, fancy: pl.DataFrame, n: int) -> list[pl.DataFrame]:
        """Lines with quotes: a regex handles plain "quoted" fields (the usual export style),
        Python's csv module the rest (escaped "" quotes, odd spacing)."""
        import polars as pl

        one = r'(?:"([^"]*)"|([^",]*))'
        pattern = "^" + ",".join([one] * n) + "$"
        groups = pl.col("_raw").str.extract_groups(pattern)
        fancy = fancy.with_columns(groups.alias("_g"))
        simple = fancy.filter(pl.col("_g").struct.field("1").is_not_null()
                              | pl.col("_g").struct.field("2").is_not_null())
        out = [simple.select("line", "_raw", *[
            pl.coalesce(pl.col("_g").struct.field(str(2 * i + 1)),
                        pl.col("_g").struct.field(str(2 * i + 2))).alias(f"_f{i}")
            for i in range(n)])]
        rest = fancy.filter(pl.col("_g").struct.field("1").is_null()
                            & pl.col("_g").struct.field("2").is_null())
        if rest.height:
            rows: list[dict[str, object]] = []
            for line, raw in rest.select("line", "_raw").iter_rows():
                row: dict[str, object] = {"line": line, "_raw": raw}
                try:
                    fields = next(csv.reader([raw]), [])
                except csv.Error as exc:  # e.g. a stray carriage return inside the line
                    row.update({f"_f{i}": None for i in range(n)})
                    row.update({"_reason": "malformed_line", "_detail": str(exc)[:200]})
                    rows.append(row)
                    continue
                for i in range(n):
                    row[f"_f{i}"] = fields[i] if i < len(fields) else None
                if len(fields) != n:
                    row["_reason"] = "wrong_field_count"
                    row["_detail"] = f"expected {n} fields, got {len(fields)}"
                else:
                    row["_reason"] = None
                    row["_detail"] = None
                rows.append(row)
            schema = {"line": pl.Int64, "_raw": pl.String,
                      **{f"_f{i}": pl.String for i in range(n)},
                      "_reason": pl.String, "_detail": pl.String}
            out.append(pl.DataFrame(rows, schema=schema))
        return out


def _lines(text: str) -> pl.Series:
    """The lines of a block (which ends with a line break, or at the end of the file), split in
    Polars: a Python list of a million line strings costs more than all the parsing after it."""
    import polars as pl

    lines = pl.Series("_raw", [text], dtype=pl.String).str.split("\n").explode()
    return lines.slice(0, len(lines) - 1) if text.endswith("\n") else lines
