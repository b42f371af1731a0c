"""Bank and agent file layouts as data (银行代扣/代收文件格式).

Every bank and collection agent has its own file format: fixed-width or delimited, GBK, a header,
detail lines and a trailer with the count and total. A layout file (TOML) describes one of them;
the code that writes debit batches and reads result and agent files knows no bank. The layouts
shipped here are ILLUSTRATIVE (a generic ICBC-like fixed-width layout, a rural credit cooperative
delimited one, a post office agent file); a utility adds its bank by adding a file, in this
directory or in the directory named by ``[payments] layout_dir`` in the config file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dianfei.core.errors import NotFoundError, ValidationError

PACKAGED = Path(__file__).parent
FIELD_TYPES = ("text", "int", "amount", "date", "time")
SECTIONS = ("debit", "result", "agent")
RECORDS = ("header", "detail", "trailer")


@dataclass(frozen=True)
class FieldSpec:
    """One field of a record: its name (the data item it carries), width in encoded bytes (the
    exact width for fixed-width files, the most allowed for delimited ones), type, and a constant
    value for record-type markers."""

    name: str
    width: int
    type: str = "text"
    value: str | None = None


@dataclass(frozen=True)
class RecordSpec:
    fields: tuple[FieldSpec, ...]

    @property
    def marker(self) -> FieldSpec | None:
        """The leading constant field telling header, detail and trailer apart."""
        first = self.fields[0] if self.fields else None
        return first if first is not None and first.value is not None else None

    @property
    def width(self) -> int:
        return sum(f.width for f in self.fields)

    def names(self) -> list[str]:
        return [f.name for f in self.fields]


@dataclass(frozen=True)
class Layout:
    code: str
    name: str
    kind: str
    channel: str
    encoding: str
    format: str
    line_ending: str
    amount: str
    date_format: str
    time_format: str
    merchant_code: str
    delimiter: str = "|"
    transaction_id: str = "{batch_id}-{serial}"
    #: section (debit, result, agent) → record (header, detail, trailer) → spec
    sections: dict[str, dict[str, RecordSpec]] = field(default_factory=dict)
    success_codes: frozenset[str] = frozenset()
    returned_codes: frozenset[str] = frozenset()
    reasons: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def records(self, section: str) -> dict[str, RecordSpec]:
        try:
            return self.sections[section]
        except KeyError:
            raise ValidationError(f"layout {self.code} has no [{section}] records") from None


def layout_dirs(extra: Path | None = None) -> list[Path]:
    return [d for d in (extra, PACKAGED) if d is not None]


def available_layouts(extra: Path | None = None) -> list[str]:
    names: set[str] = set()
    for d in layout_dirs(extra):
        names |= {p.stem for p in d.glob("*.toml")}
    return sorted(names)


def load_layout(code: str, extra: Path | None = None) -> Layout:
    """The layout named ``code`` (a utility's own directory first, then the packaged ones)."""
    if not code or "/" in code or "\\" in code or code.startswith("."):
        raise ValidationError(f"not a layout name: {code!r}")
    for d in layout_dirs(extra):
        path = d / f"{code}.toml"
        if path.exists():
            return parse_layout(path)
    raise NotFoundError(f"no bank/agent layout {code!r}; known: {', '.join(available_layouts(extra))}")


def parse_layout(path: Path) -> Layout:
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError(f"cannot read the layout: {exc}", where=where) from None

    def need(key: str) -> Any:
        if key not in raw:
            raise ValidationError(f"missing key {key!r}", where=where)
        return raw[key]

    fmt = need("format")
    if fmt not in ("fixed", "delimited"):
        raise ValidationError(f"format must be fixed or delimited, got {fmt!r}", where=where)
    amount = need("amount")
    if amount not in ("fen", "yuan"):
        raise ValidationError(f"amount must be fen or yuan, got {amount!r}", where=where)
    try:
        "".encode(need("encoding"))
    except LookupError:
        raise ValidationError(f"unknown encoding {raw['encoding']!r}", where=where) from None
    sections: dict[str, dict[str, RecordSpec]] = {}
    for sec in SECTIONS:
        if sec not in raw:
            continue
        recs: dict[str, RecordSpec] = {}
        for rec in RECORDS:
            if rec not in raw[sec]:
                continue
            fields = []
            for i, f in enumerate(raw[sec][rec].get("fields", [])):
                ftype = f.get("type", "text")
                if (
                    ftype not in FIELD_TYPES
                    or not isinstance(f.get("width"), int)
                    or f["width"] < 1
                    or not f.get("name")
                ):
                    raise ValidationError(
                        f"[{sec}.{rec}] field {i + 1}: needs a name, a positive width "
                        f"and a type in {FIELD_TYPES}",
                        where=where,
                    )
                value = f.get("value")
                fields.append(
                    FieldSpec(
                        name=str(f["name"]),
                        width=int(f["width"]),
                        type=ftype,
                        value=None if value is None else str(value),
                    )
                )
            recs[rec] = RecordSpec(tuple(fields))
        if "detail" not in recs or "trailer" not in recs:
            raise ValidationError(
                f"[{sec}] needs detail and trailer records (the trailer carries the "
                "count and total every file is checked against)",
                where=where,
            )
        markers = [r.marker.value for r in recs.values() if r.marker is not None]
        if len(markers) != len(recs) or len(set(markers)) != len(markers):
            raise ValidationError(
                f"[{sec}] every record needs a distinct leading record-type value", where=where
            )
        trailer = recs["trailer"].names()
        if "count" not in trailer or "total" not in trailer:
            raise ValidationError(f"[{sec}.trailer] needs count and total fields", where=where)
        sections[sec] = recs
    result = raw.get("result", {})
    codes = result.get("codes", {})
    return Layout(
        code=path.stem,
        name=str(raw.get("name", path.stem)),
        kind=str(need("kind")),
        channel=str(need("channel")),
        encoding=str(raw["encoding"]),
        format=fmt,
        line_ending=str(raw.get("line_ending", "\r\n")),
        amount=amount,
        date_format=str(raw.get("date_format", "%Y%m%d")),
        time_format=str(raw.get("time_format", "%Y%m%d%H%M%S")),
        merchant_code=str(raw.get("merchant_code", "")),
        delimiter=str(raw.get("delimiter", "|")),
        transaction_id=str(raw.get("transaction_id", "{batch_id}-{serial}")),
        sections=sections,
        success_codes=frozenset(str(c) for c in codes.get("success", [])),
        returned_codes=frozenset(str(c) for c in codes.get("returned", [])),
        reasons={str(k): str(v) for k, v in result.get("reasons", {}).items()},
        source=where,
    )
