"""Reading and writing bank and agent files by their layout (see ``payments.layouts``).

Bank files are small next to channel statements (a county's monthly debit batch is tens of
thousands of lines), so they are read line by line: what matters is that every field is checked,
every bad one named with its line, and that a file whose trailer (汇总记录) disagrees with its
details is refused whole — nothing from it is posted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from dianfei.core.clock import BUSINESS_TZ
from dianfei.core.errors import ValidationError
from dianfei.core.money import fmt_yuan
from dianfei.payments.layouts import FieldSpec, Layout, RecordSpec
from dianfei.payments.statements.common import (
    STATEMENT_SCHEMA,
    Finding,
    SettlementCheck,
    Statement,
    StatementError,
    read_bytes,
)


@dataclass
class LayoutFile:
    """A file read by its layout: header values, detail rows (with their ``line``), trailer."""

    file: str
    header: dict[str, Any]
    details: list[dict[str, Any]]
    trailer: dict[str, Any]
    check: SettlementCheck = field(default_factory=lambda: SettlementCheck({}))


# ---------------------------------------------------------------- writing


def render(
    layout: Layout,
    section: str,
    *,
    header: dict[str, Any] | None,
    details: list[dict[str, Any]],
    trailer: dict[str, Any],
) -> bytes:
    """The file's bytes: header, details and trailer formatted and encoded per the layout."""
    recs = layout.records(section)
    lines: list[bytes] = []
    if "header" in recs:
        lines.append(_render_record(layout, recs["header"], header or {}, "header"))
    for i, row in enumerate(details, start=1):
        lines.append(_render_record(layout, recs["detail"], row, f"detail {i}"))
    lines.append(_render_record(layout, recs["trailer"], trailer, "trailer"))
    end = layout.line_ending.encode("ascii")
    return end.join(lines) + end


def _render_record(layout: Layout, spec: RecordSpec, values: dict[str, Any], where: str) -> bytes:
    parts = [_render_field(layout, f, values.get(f.name), where) for f in spec.fields]
    if layout.format == "fixed":
        return b"".join(parts)
    return layout.delimiter.encode(layout.encoding).join(parts)


def _render_field(layout: Layout, f: FieldSpec, value: Any, where: str) -> bytes:
    fixed = layout.format == "fixed"
    if f.value is not None:
        text, numeric = f.value, False
    elif value is None:
        text, numeric = "", f.type in ("int", "amount")
    elif f.type == "int":
        text, numeric = str(int(value)), True
    elif f.type == "amount":
        text, numeric = (str(int(value)) if layout.amount == "fen" else fmt_yuan(int(value))), True
        if int(value) < 0:
            raise ValidationError(f"{where}, {f.name}: a negative amount cannot go into a bank file")
    elif f.type == "date":
        text, numeric = value.strftime(layout.date_format), False
    elif f.type == "time":
        text, numeric = value.astimezone(BUSINESS_TZ).strftime(layout.time_format), False
    else:
        text, numeric = str(value), False
    if not fixed and (layout.delimiter in text or "\n" in text or "\r" in text):
        raise ValidationError(f"{where}, {f.name}: the value holds the delimiter or a line break: {text!r}")
    try:
        raw = text.encode(layout.encoding)
    except UnicodeEncodeError:
        raise ValidationError(f"{where}, {f.name}: {text!r} cannot be written in {layout.encoding}") from None
    if len(raw) > f.width:
        raise ValidationError(f"{where}, {f.name}: {text!r} is {len(raw)} bytes, the layout allows {f.width}")
    if not fixed:
        return raw
    return raw.rjust(f.width, b"0") if numeric else raw.ljust(f.width, b" ")


# ---------------------------------------------------------------- reading


def read_layout_file(
    layout: Layout, section: str, source: str | Path | bytes, *, name: str | None = None
) -> LayoutFile:
    """Read a file by its layout; raise StatementError naming every bad line and field, or the
    trailer mismatch. Returns only a file that passed its integrity check."""
    data, file = read_bytes(source, name)
    recs = layout.records(section)
    raw_lines = data.split(b"\n")
    while raw_lines and not raw_lines[-1].strip():
        raw_lines.pop()
    if not raw_lines:
        raise StatementError(file, [Finding(1, "file", "the file is empty")])
    findings: list[Finding] = []
    header: dict[str, Any] = {}
    details: list[dict[str, Any]] = []
    trailer: dict[str, Any] | None = None
    kinds = {rec: spec for rec, spec in recs.items()}
    for i, raw in enumerate(raw_lines, start=1):
        raw = raw.rstrip(b"\r")
        rec = _record_kind(layout, kinds, raw)
        if rec is None:
            findings.append(Finding(i, "record", f"not a record of this layout: {raw[:30]!r}"))
            continue
        if trailer is not None:
            findings.append(Finding(i, "record", "a line after the trailer"))
            continue
        if rec == "header" and i != 1:
            findings.append(Finding(i, "record", "a header record that is not the first line"))
            continue
        if rec == "detail" and "header" in recs and i == 1:
            findings.append(Finding(i, "record", "the file must start with its header record"))
        values = _read_record(layout, recs[rec], raw, i, findings)
        if values is None:
            continue
        if rec == "header":
            header = values
        elif rec == "detail":
            values["line"] = i
            details.append(values)
        else:
            trailer = values
    if trailer is None and not any(f.field == "record" for f in findings):
        findings.append(Finding(len(raw_lines), "trailer", "no trailer record: the file is truncated"))
    if findings:
        raise StatementError(file, findings)
    assert trailer is not None
    computed_total = sum(int(d.get("amount") or 0) for d in details)
    check = SettlementCheck(
        {"count": (int(trailer["count"]), len(details)), "total": (int(trailer["total"]), computed_total)}
    )
    if not check.ok:
        last = len(raw_lines)
        raise StatementError(
            file,
            [
                Finding(
                    last,
                    name,
                    f"trailer says {d}, the details add up to {c}: the "
                    "file is refused whole, nothing is posted",
                )
                for name, (d, c) in check.figures.items()
                if d != c
            ],
        )
    return LayoutFile(file=file, header=header, details=details, trailer=trailer, check=check)


def _record_kind(layout: Layout, recs: dict[str, RecordSpec], raw: bytes) -> str | None:
    for rec, spec in recs.items():
        marker = spec.marker
        if marker is None or marker.value is None:
            continue
        token = marker.value.encode(layout.encoding)
        if layout.format == "fixed":
            if raw[: marker.width].rstrip(b" ") == token:
                return rec
        elif _decoded(layout, raw).split(layout.delimiter, 1)[0].strip() == marker.value:
            return rec
    return None


def _decoded(layout: Layout, raw: bytes) -> str:
    """The line as text for telling its record kind (a bad byte is reported by the reader)."""
    return raw.decode(layout.encoding, errors="replace")


def _read_record(
    layout: Layout, spec: RecordSpec, raw: bytes, line: int, findings: list[Finding]
) -> dict[str, Any] | None:
    if layout.format == "fixed":
        if len(raw) != spec.width:
            findings.append(
                Finding(line, "record", f"{len(raw)} bytes, the layout's record has {spec.width}")
            )
            return None
        parts, pos = [], 0
        for f in spec.fields:
            parts.append(raw[pos : pos + f.width])
            pos += f.width
    else:
        # decode the line, then split: in GBK the second byte of 116 characters (e.g. 緗, 鐋) is
        # 0x7C, the byte of "|", so splitting the bytes would cut such a name into two fields
        try:
            text_line = raw.decode(layout.encoding)
        except UnicodeDecodeError as exc:
            findings.append(Finding(line, "record", f"bytes not valid {layout.encoding} at byte {exc.start}"))
            return None
        parts = [s.encode(layout.encoding) for s in text_line.split(layout.delimiter)]
        if len(parts) != len(spec.fields):
            findings.append(
                Finding(line, "record", f"{len(parts)} fields, the layout's record has {len(spec.fields)}")
            )
            return None
    values: dict[str, Any] = {}
    ok = True
    for f, part in zip(spec.fields, parts, strict=True):
        try:
            text = part.decode(layout.encoding).strip()
        except UnicodeDecodeError:
            findings.append(Finding(line, f.name, f"bytes not valid {layout.encoding}"))
            ok = False
            continue
        if layout.format == "delimited" and len(part.strip()) > f.width:
            findings.append(Finding(line, f.name, f"longer than the layout's {f.width} bytes"))
            ok = False
            continue
        try:
            values[f.name] = _convert(layout, f, text)
        except ValueError as exc:
            findings.append(Finding(line, f.name, f"{exc} (got {text[:40]!r})"))
            ok = False
    return values if ok else None


def _convert(layout: Layout, f: FieldSpec, text: str) -> Any:
    if f.value is not None:
        if text != f.value:
            raise ValueError(f"expected {f.value!r}")
        return text
    if f.type == "text":
        return text
    if text == "":
        raise ValueError("empty")
    if f.type == "int":
        if not text.isascii() or not text.isdigit():
            raise ValueError("not a whole number")
        return int(text)
    if f.type == "amount":
        if text.startswith("-"):
            raise ValueError("negative amount")
        if layout.amount == "fen":
            if not text.isascii() or not text.isdigit():
                raise ValueError("not an amount in whole fen")
            return int(text)
        if not _is_yuan(text):
            raise ValueError("not an amount in yuan with two places")
        return int(Decimal(text) * 100)
    if f.type == "date":
        try:
            return datetime.strptime(text, layout.date_format).date()
        except ValueError:
            raise ValueError(f"not a date {layout.date_format}") from None
    try:
        return datetime.strptime(text, layout.time_format).replace(tzinfo=BUSINESS_TZ)
    except ValueError:
        raise ValueError(f"not a time {layout.time_format}") from None


def _is_yuan(text: str) -> bool:
    whole, dot, frac = text.partition(".")
    return (
        text.isascii()
        and whole.isdigit()
        and len(whole) <= 13
        and (not dot or (frac.isdigit() and 1 <= len(frac) <= 2))
    )


# ---------------------------------------------------------------- as statements


@dataclass
class BankResult:
    """A bank's result file for one debit batch: one row per line with its outcome."""

    file: str
    batch_id: str
    #: serial, account_id, amount, result_code, outcome (success/failed/returned), reason, line
    frame: pl.DataFrame
    debit_date: date | None
    check: SettlementCheck


def read_bank_result(layout: Layout, source: str | Path | bytes, *, name: str | None = None) -> BankResult:
    """A bank result file: every line's outcome by the layout's result codes."""
    parsed = read_layout_file(layout, "result", source, name=name)
    findings = []
    rows = []
    for d in parsed.details:
        code = str(d.get("result_code", ""))
        if code in layout.success_codes:
            outcome, reason = "success", None
        elif code in layout.returned_codes:
            outcome, reason = "returned", layout.reasons.get(code, "returned")
        elif code in layout.reasons:
            outcome, reason = "failed", layout.reasons[code]
        else:
            findings.append(Finding(d["line"], "result_code", f"unknown result code {code!r}"))
            continue
        rows.append(
            {
                "serial": int(d["serial"]),
                "account_id": d.get("account_id") or None,
                "amount": int(d["amount"]),
                "result_code": code,
                "outcome": outcome,
                "reason": reason,
                "message": d.get("result_message") or None,
                "line": d["line"],
            }
        )
    batch_id = str(parsed.header.get("batch_id") or "")
    if not batch_id:
        findings.append(Finding(1, "batch_id", "the header names no batch"))
    if findings:
        raise StatementError(parsed.file, findings)
    schema = {
        "serial": pl.Int64,
        "account_id": pl.String,
        "amount": pl.Int64,
        "result_code": pl.String,
        "outcome": pl.String,
        "reason": pl.String,
        "message": pl.String,
        "line": pl.Int64,
    }
    return BankResult(
        file=parsed.file,
        batch_id=batch_id,
        frame=pl.DataFrame(rows, schema=schema),
        debit_date=parsed.header.get("date"),
        check=parsed.check,
    )


def bank_result_statement(result: BankResult) -> Statement:
    """The successful debits of a result file as a statement (channel 'bank'), for reconciling.

    The transaction id is the batch id and the line's serial, as posted by ``bank import``.
    """
    day = result.debit_date
    paid_at = datetime.combine(day, time(0), tzinfo=BUSINESS_TZ) if day else None
    frame = (
        result.frame.filter(pl.col("outcome") == "success")
        .select(
            pl.lit("bank").alias("channel"),
            (pl.lit(result.batch_id + "-") + pl.col("serial").cast(pl.String)).alias("transaction_id"),
            pl.lit(None, pl.String).alias("order_no"),
            "account_id",
            "amount",
            pl.lit("payment").alias("kind"),
            pl.lit(paid_at, pl.Datetime("us", "UTC")).alias("paid_at"),
            pl.lit(0, pl.Int64).alias("fee"),
            "line",
            pl.lit(None, pl.String).alias("refund_id"),
        )
        .cast(STATEMENT_SCHEMA)  # type: ignore[arg-type]
    )
    return Statement(
        channel="bank", file=result.file, frame=frame, check=result.check, meta={"batch_id": result.batch_id}
    )


def read_agent_file(layout: Layout, source: str | Path | bytes, *, name: str | None = None) -> Statement:
    """An agent's daily collection file (代收文件) as a statement of payments naming accounts."""
    parsed = read_layout_file(layout, "agent", source, name=name)
    findings = []
    rows = []
    for d in parsed.details:
        keys = {**{k: v for k, v in parsed.header.items()}, **d}
        keys["date"] = parsed.header["date"].strftime("%Y%m%d") if parsed.header.get("date") else ""
        keys.setdefault("agent_code", layout.merchant_code)
        try:
            txn = layout.transaction_id.format(**keys)
        except KeyError as exc:
            raise ValidationError(f"layout {layout.code}: transaction_id names {exc}, not a field") from None
        if not d.get("account_id"):
            findings.append(Finding(d["line"], "account_id", "empty account"))
            continue
        if int(d["amount"]) <= 0:
            findings.append(Finding(d["line"], "amount", "a collection must be positive"))
            continue
        paid = d.get("paid_at")
        if paid is None:
            findings.append(Finding(d["line"], "paid_at", "no time of payment"))
            continue
        rows.append(
            {
                "channel": layout.channel,
                "transaction_id": txn,
                "order_no": None,
                "account_id": str(d["account_id"]),
                "amount": int(d["amount"]),
                "kind": "payment",
                "paid_at": paid,
                "fee": 0,
                "line": d["line"],
                "refund_id": None,
            }
        )
    if findings:
        raise StatementError(parsed.file, findings)
    frame = pl.DataFrame(rows, schema=STATEMENT_SCHEMA)
    return Statement(
        channel=layout.channel,
        file=parsed.file,
        frame=frame,
        check=parsed.check,
        meta={"agent_code": str(parsed.header.get("agent_code", layout.merchant_code))},
    )
