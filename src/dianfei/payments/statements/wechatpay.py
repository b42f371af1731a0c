"""WeChat Pay daily trade bill (微信支付交易账单), as downloaded by the API (v2 ``downloadbill`` or
v3 ``/v3/bill/tradebill`` → download URL).

Format (pay.weixin.qq.com, 交易账单文件格式说明):
- line 1: the detail header, plain comma-separated Chinese column names (no backticks); the
  ALL bill has 27 columns: 交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,
  交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,
  充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注
  (SUCCESS and REFUND bills have subsets; the reader goes by name, not position);
- detail rows: every field prefixed with a backtick (`) so spreadsheets keep long ids;
- the summary header 总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,
  订单总金额,申请退款总金额 then one summary row, backtick-prefixed too.
Amounts are yuan with two places; the service charge (手续费) has five. Times are Beijing time.
交易状态 SUCCESS is a payment; REFUND (and REVOKED, a cancelled payment) a refund line, whose
微信订单号 is the payment refunded and 微信退款单号 the refund's own id.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from dianfei.payments.statements.common import (
    STATEMENT_SCHEMA,
    Finding,
    SettlementCheck,
    Statement,
    StatementError,
    beijing_to_utc,
    collect_findings,
    decode_lines,
    read_bytes,
    yuan_to_fen,
    yuan_units,
)

CHANNEL = "wechatpay"

#: every detail column WeChat documents for the ALL, SUCCESS and REFUND bills (and the pre-2018
#: names 总金额 / 企业红包金额 some merchants still get); anything else means the format changed
KNOWN_COLUMNS = frozenset(
    [
        "交易时间",
        "公众账号ID",
        "商户号",
        "特约商户号",
        "子商户号",
        "设备号",
        "微信订单号",
        "商户订单号",
        "用户标识",
        "交易类型",
        "交易状态",
        "付款银行",
        "货币种类",
        "应结订单金额",
        "代金券金额",
        "微信退款单号",
        "商户退款单号",
        "退款金额",
        "充值券退款金额",
        "退款类型",
        "退款状态",
        "商品名称",
        "商户数据包",
        "手续费",
        "费率",
        "订单金额",
        "申请退款金额",
        "费率备注",
        "退款申请时间",
        "退款成功时间",
        "总金额",
        "企业红包金额",
        "企业红包退款金额",
        "代金券或立减优惠金额",
        "代金券或立减优惠退款金额",
    ]
)
REQUIRED = ("交易时间", "微信订单号", "商户订单号", "交易状态", "手续费")
SUMMARY_MARK = "总交易单数"
KINDS = {"SUCCESS": "payment", "REFUND": "refund", "REVOKED": "refund"}


def parse_wechatpay_bill(
    source: str | Path | bytes, *, name: str | None = None, encoding: str = "auto"
) -> Statement:
    """Parse a WeChat Pay trade bill into a statement frame; raise StatementError naming every
    bad line and field (nothing is skipped)."""
    data, file = read_bytes(source, name)
    lines = decode_lines(data, file, encoding)
    n = lines.len()
    # trailing blank lines are normal (the file ends with \r\n)
    nonblank = lines.str.strip_chars().str.len_chars() > 0
    idx = nonblank.arg_true()
    last = int(idx[-1]) if idx.len() else -1
    if last < 0:
        raise StatementError(file, [Finding(1, "file", "the file is empty")])
    header = [c.strip() for c in str(lines[0]).split(",")]
    findings = _check_header(header)
    if findings:
        raise StatementError(file, findings)
    marks = lines.str.starts_with(SUMMARY_MARK).arg_true()
    if marks.len() == 0:
        raise StatementError(
            file,
            [
                Finding(
                    last + 1,
                    "summary",
                    "no summary header (总交易单数…): the file is truncated or not a WeChat Pay trade bill",
                )
            ],
        )
    s = int(marks[0])
    if s + 1 > last:
        raise StatementError(
            file, [Finding(s + 1, "summary", "summary header without its summary row: the file is truncated")]
        )
    if s + 1 < last:
        raise StatementError(file, [Finding(s + 3, "file", "unexpected lines after the summary row")])

    detail = pl.DataFrame(
        {"raw": lines.slice(1, s - 1), "line": pl.int_range(2, s + 1, eager=True, dtype=pl.Int64)}
    )
    frame, check = _details(detail, header, file)
    summary_fields = _fields(str(lines[s + 1]))
    summary_names = [c.strip() for c in str(lines[s]).split(",")]
    check = _settlement(frame, check, summary_names, summary_fields, s + 2, file)
    out = frame.select(list(STATEMENT_SCHEMA)).cast(STATEMENT_SCHEMA)  # type: ignore[arg-type]
    return Statement(channel=CHANNEL, file=file, frame=out, check=check, meta={"lines": str(n)})


def _check_header(header: list[str]) -> list[Finding]:
    found = [
        Finding(
            1,
            c or "(empty)",
            "unknown column: the bill format changed or this is not a WeChat Pay trade bill",
        )
        for c in header
        if c not in KNOWN_COLUMNS
    ]
    found += [Finding(1, c, "missing column") for c in REQUIRED if c not in header]
    if not ({"订单金额", "应结订单金额", "总金额"} & set(header)):
        found.append(Finding(1, "订单金额", "missing column"))
    if len(set(header)) != len(header):
        found.append(Finding(1, "header", "a column appears twice"))
    return found


def _fields(row: str) -> list[str]:
    if not row.startswith("`"):
        return [row]
    return row[1:].split(",`")


def _details(detail: pl.DataFrame, header: list[str], file: str) -> tuple[pl.DataFrame, SettlementCheck]:
    width = len(header)
    # every field starts with a backtick, so ",`" separates fields even when a product name holds
    # a bare comma
    detail = detail.with_columns(
        pl.col("raw").str.starts_with("`").alias("_tick"),
        pl.col("raw").str.count_matches(",`", literal=True).alias("_seps"),
    )
    shape = collect_findings(
        detail,
        [
            ("raw", pl.col("raw").str.strip_chars() == "", "blank line inside the details"),
            (
                "raw",
                (pl.col("raw").str.strip_chars() != "") & ~pl.col("_tick"),
                "a detail row must start with a backtick (`)",
            ),
            (
                "raw",
                pl.col("_tick") & (pl.col("_seps") != width - 1),
                f"expected {width} backtick-prefixed fields",
            ),
        ],
    )
    if shape:
        raise StatementError(file, shape)
    cols = detail.select(
        "line",
        pl.col("raw")
        .str.strip_prefix("`")
        .str.split_exact(",`", width - 1)
        .struct.rename_fields(header)
        .alias("f"),
    ).unnest("f")
    cols = cols.with_columns(pl.col(c).str.strip_chars() for c in header)
    amount_col = (
        "订单金额" if "订单金额" in header else ("应结订单金额" if "应结订单金额" in header else "总金额")
    )
    settle_col = "应结订单金额" if "应结订单金额" in header else amount_col
    refund_col = next((c for c in ("申请退款金额", "退款金额") if c in header), None)
    has_refund_id = "微信退款单号" in header
    status = pl.col("交易状态")
    kind = status.replace_strict(KINDS, default=None)
    conv = cols.with_columns(
        kind.alias("kind"),
        yuan_to_fen(pl.col(amount_col)).alias("_order"),
        yuan_to_fen(pl.col(settle_col)).alias("_settle"),
        (yuan_to_fen(pl.col(refund_col)) if refund_col else pl.lit(None, pl.Int64)).alias("_refund"),
        (yuan_to_fen(pl.col("退款金额")) if "退款金额" in header else pl.lit(None, pl.Int64)).alias(
            "_refund_settle"
        ),
        yuan_units(pl.col("手续费"), 5).alias("_fee5"),
        yuan_to_fen(pl.col("手续费"), 5).alias("fee"),
        beijing_to_utc(pl.col("交易时间")).alias("paid_at"),
    )
    is_pay = pl.col("kind") == "payment"
    is_ref = pl.col("kind") == "refund"
    checks: list[tuple[str, pl.Expr, str]] = [
        ("交易状态", pl.col("kind").is_null(), "unknown trade status (expected SUCCESS, REFUND or REVOKED)"),
        ("交易时间", pl.col("paid_at").is_null(), "not a time yyyy-MM-dd HH:mm:ss"),
        ("微信订单号", pl.col("微信订单号") == "", "empty transaction id"),
        (amount_col, pl.col("_order").is_null(), "not an amount in yuan with two places"),
        (amount_col, is_pay & (pl.col("_order") <= 0), "a payment must be positive"),
        (settle_col, pl.col("_settle").is_null(), "not an amount in yuan with two places"),
        (settle_col, is_pay & (pl.col("_settle") < 0), "a payment cannot settle a negative amount"),
        ("手续费", pl.col("_fee5").is_null(), "not an amount in yuan with up to five places"),
    ]
    if refund_col:
        checks += [
            (refund_col, is_ref & pl.col("_refund").is_null(), "not an amount in yuan"),
            (refund_col, is_ref & (pl.col("_refund") <= 0), "a refund amount must be positive"),
        ]
    else:
        checks.append(("交易状态", is_ref, "a refund line in a bill without refund columns"))
    if has_refund_id:
        checks.append(("微信退款单号", is_ref & (pl.col("微信退款单号").is_in(["", "0"])), "empty refund id"))
    bad = collect_findings(conv, checks)
    if bad:
        raise StatementError(file, bad)
    frame = conv.with_columns(
        pl.lit(CHANNEL).alias("channel"),
        pl.col("微信订单号").alias("transaction_id"),
        pl.when(pl.col("商户订单号") == "").then(None).otherwise(pl.col("商户订单号")).alias("order_no"),
        pl.lit(None, pl.String).alias("account_id"),
        pl.when(is_pay).then(pl.col("_order")).otherwise(pl.col("_refund")).alias("amount"),
        (
            pl.when(is_ref).then(pl.col("微信退款单号")).otherwise(None)
            if has_refund_id
            else pl.lit(None, pl.String)
        ).alias("refund_id"),
    )
    sums = frame.select(
        pl.len().alias("count"),
        pl.col("_settle").filter(is_pay).sum().alias("settle"),
        pl.col("_order").filter(is_pay).sum().alias("order"),
        pl.col("_refund_settle").filter(is_ref).sum().alias("refund_settle"),
        pl.col("_refund").filter(is_ref).sum().alias("refund"),
        pl.col("_fee5").sum().alias("fee5"),
    ).row(0, named=True)
    computed = {k: int(v or 0) for k, v in sums.items()}
    return frame, SettlementCheck(figures={k: (0, v) for k, v in computed.items()})


#: summary column → the computed figure it must equal
_SUMMARY = {
    "总交易单数": "count",
    "应结订单总金额": "settle",
    "总交易额": "settle",
    "订单总金额": "order",
    "退款总金额": "refund_settle",
    "总退款金额": "refund_settle",
    "申请退款总金额": "refund",
    "手续费总金额": "fee5",
}


def _settlement(
    frame: pl.DataFrame, computed: SettlementCheck, names: list[str], values: list[str], line: int, file: str
) -> SettlementCheck:
    if len(names) != len(values):
        raise StatementError(
            file, [Finding(line, "summary", f"expected {len(names)} summary fields, got {len(values)}")]
        )
    got = {k: v for k, (_, v) in computed.figures.items()}
    figures: dict[str, tuple[int, int]] = {}
    bad: list[Finding] = []
    for name, value in zip(names, values, strict=True):
        key = _SUMMARY.get(name)
        if key is None:
            continue  # e.g. 充值券退款总金额: nothing in the details to compare it with
        text = value.strip()
        places = 0 if key == "count" else (5 if key == "fee5" else 2)
        parsed = pl.select(yuan_units(pl.lit(text), places)).item()
        if parsed is None:
            bad.append(Finding(line, name, f"not a number (got {text[:40]!r})"))
            continue
        figures[name] = (int(parsed), got[key])
    if bad:
        raise StatementError(file, bad)
    if "总交易单数" not in figures:
        raise StatementError(file, [Finding(line - 1, "总交易单数", "missing summary column")])
    return SettlementCheck(figures=figures)
