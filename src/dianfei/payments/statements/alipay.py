"""Alipay business-detail bill (支付宝业务明细对账单), the ``trade`` bill of
``alipay.data.dataservice.bill.downloadurl.query``.

The download is a zip holding ``{pid}0156_{yyyyMMdd}_业务明细.csv`` and a summary file
``…_业务明细(汇总).csv``; both are GBK. The detail file reads:

    #支付宝业务明细查询
    #账号：[20881234567890120156]
    #起始日期：[2024年03月05日 00:00:00]   终止日期：[2024年03月06日 00:00:00]
    #-----------------------------------------业务明细列表----------------------------------------
    支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,
    订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,
    商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注
    2024030522001…\t,DF…\t,交易,电费,2024-03-05 10:00:00,2024-03-05 10:00:05,…,12.34,12.34,…,-0.07,0.00,
    #-----------------------------------------业务明细列表结束------------------------------------
    #交易合计：1笔，商家实收共12.34元，商家优惠共0.00元
    #退款合计：0笔，商家实收退款共0.00元，商家优惠退款共0.00元
    #导出时间：[2024年03月06日 09:21:10]

Fields carry trailing tabs (so spreadsheets keep long ids as text); they are stripped. 业务类型
交易 is a payment, 退款 a refund: its 支付宝交易号 is the payment refunded, 退款批次号/请求号 the
refund's id, and its 商家实收 negative. The amount of a payment is 订单金额 (what the customer
paid, what our order asked for); the totals check compares 商家实收 (what Alipay settles) with
the two 合计 lines. The service charge 服务费 is negative when charged.
"""

from __future__ import annotations

import re
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
    unzip_member,
    yuan_to_fen,
)

CHANNEL = "alipay"

COLUMNS = [
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
]
REQUIRED = ("支付宝交易号", "商户订单号", "业务类型", "完成时间", "订单金额（元）", "商家实收（元）")
KINDS = {"交易": "payment", "退款": "refund"}
_START = re.compile(r"^#-+业务明细列表-+\s*$")
_END = re.compile(r"^#-+业务明细列表结束-+\s*$")
_TRADES = re.compile(r"^#交易合计[:：]\s*(\d+)\s*笔[,，]\s*商家实收共\s*([+-]?[\d.]+)\s*元")
_REFUNDS = re.compile(r"^#退款合计[:：]\s*(\d+)\s*笔[,，]\s*商家实收退款共\s*([+-]?[\d.]+)\s*元")
_ACCOUNT = re.compile(r"^#账号[:：]\s*\[(\w+)\]")


def parse_alipay_bill(
    source: str | Path | bytes, *, name: str | None = None, encoding: str = "auto"
) -> Statement:
    """Parse an Alipay business-detail bill (the zip, or the detail CSV taken out of it)."""
    data, file = read_bytes(source, name)
    if data[:4] == b"PK\x03\x04":
        data, file = unzip_member(data, file, prefer="业务明细", avoid="汇总")
    lines = decode_lines(data, file, encoding)
    starts = lines.str.contains(_START.pattern).arg_true()
    if starts.len() != 1:
        raise StatementError(
            file,
            [
                Finding(
                    1,
                    "file",
                    "no '#----业务明细列表----' line: not an Alipay "
                    "business-detail bill (or a wrong encoding)",
                )
            ],
        )
    start = int(starts[0])
    ends = lines.str.contains(_END.pattern).arg_true()
    if ends.len() != 1 or int(ends[0]) <= start + 1:
        raise StatementError(
            file,
            [
                Finding(
                    lines.len(),
                    "file",
                    "no '#----业务明细列表结束----' line after the details: the file is truncated",
                )
            ],
        )
    end = int(ends[0])
    header = [c.strip() for c in str(lines[start + 1]).split(",")]
    bad_header = [
        Finding(start + 2, c or "(empty)", "unknown column: the bill format changed")
        for c in header
        if c not in COLUMNS
    ]
    bad_header += [Finding(start + 2, c, "missing column") for c in REQUIRED if c not in header]
    if bad_header:
        raise StatementError(file, bad_header)
    footer = [str(x) for x in lines.slice(end + 1).to_list()]
    trades = next((m for x in footer if (m := _TRADES.match(x))), None)
    refunds = next((m for x in footer if (m := _REFUNDS.match(x))), None)
    if trades is None or refunds is None or not any(x.startswith("#导出时间") for x in footer):
        raise StatementError(
            file,
            [
                Finding(
                    end + 2, "合计", "no '#交易合计' / '#退款合计' / '#导出时间' lines: the file is truncated"
                )
            ],
        )
    detail = pl.DataFrame(
        {
            "raw": lines.slice(start + 2, end - start - 2),
            "line": pl.int_range(start + 3, end + 1, eager=True, dtype=pl.Int64),
        }
    )
    frame = _details(detail, header, file)
    meta = {"lines": str(lines.len())}
    for x in lines.slice(0, start).to_list():
        if m := _ACCOUNT.match(str(x)):
            meta["account"] = m.group(1)
    check = _settlement(frame, trades, refunds, end + 2, file)
    out = frame.select(list(STATEMENT_SCHEMA)).cast(STATEMENT_SCHEMA)  # type: ignore[arg-type]
    return Statement(channel=CHANNEL, file=file, frame=out, check=check, meta=meta)


def _details(detail: pl.DataFrame, header: list[str], file: str) -> pl.DataFrame:
    width = len(header)
    detail = detail.with_columns(pl.col("raw").str.count_matches(",", literal=True).alias("_seps"))
    shape = collect_findings(
        detail,
        [
            ("raw", pl.col("raw").str.strip_chars() == "", "blank line inside the details"),
            ("raw", pl.col("raw").str.starts_with("#"), "comment line inside the details"),
            (
                "raw",
                (pl.col("raw").str.strip_chars() != "")
                & ~pl.col("raw").str.starts_with("#")
                & (pl.col("_seps") != width - 1),
                f"expected {width} comma-separated fields",
            ),
        ],
    )
    if shape:
        raise StatementError(file, shape)
    cols = (
        detail.select(
            "line", pl.col("raw").str.split_exact(",", width - 1).struct.rename_fields(header).alias("f")
        )
        .unnest("f")
        .with_columns(pl.col(c).str.strip_chars() for c in header)
    )
    is_pay = pl.col("kind") == "payment"
    is_ref = pl.col("kind") == "refund"
    fee_col = "服务费（元）" if "服务费（元）" in header else None
    conv = cols.with_columns(
        pl.col("业务类型").replace_strict(KINDS, default=None).alias("kind"),
        yuan_to_fen(pl.col("订单金额（元）")).alias("_order"),
        yuan_to_fen(pl.col("商家实收（元）")).alias("_received"),
        (yuan_to_fen(pl.col(fee_col)) if fee_col else pl.lit(0, pl.Int64)).alias("_fee"),
        beijing_to_utc(pl.col("完成时间")).alias("paid_at"),
    )
    refund_id_col = "退款批次号/请求号" if "退款批次号/请求号" in header else None
    checks: list[tuple[str, pl.Expr, str]] = [
        ("业务类型", pl.col("kind").is_null(), "unknown business type (expected 交易 or 退款)"),
        ("支付宝交易号", pl.col("支付宝交易号") == "", "empty transaction id"),
        ("完成时间", pl.col("paid_at").is_null(), "not a time yyyy-MM-dd HH:mm:ss"),
        ("订单金额（元）", pl.col("_order").is_null(), "not an amount in yuan with two places"),
        ("商家实收（元）", pl.col("_received").is_null(), "not an amount in yuan with two places"),
        ("订单金额（元）", is_pay & (pl.col("_order") <= 0), "a payment must be positive"),
        ("商家实收（元）", is_pay & (pl.col("_received") < 0), "a payment cannot settle a negative amount"),
        ("商家实收（元）", is_ref & (pl.col("_received") >= 0), "a refund must be negative"),
    ]
    if fee_col:
        checks.append((fee_col, pl.col("_fee").is_null(), "not an amount in yuan with two places"))
    if refund_id_col:
        checks.append((refund_id_col, is_ref & (pl.col(refund_id_col) == ""), "empty refund id"))
    bad = collect_findings(conv, checks)
    if bad:
        raise StatementError(file, bad)
    return conv.with_columns(
        pl.lit(CHANNEL).alias("channel"),
        pl.col("支付宝交易号").alias("transaction_id"),
        pl.when(pl.col("商户订单号") == "").then(None).otherwise(pl.col("商户订单号")).alias("order_no"),
        pl.lit(None, pl.String).alias("account_id"),
        pl.when(is_pay).then(pl.col("_order")).otherwise(-pl.col("_received")).alias("amount"),
        (-pl.col("_fee")).alias("fee"),
        (
            pl.when(is_ref).then(pl.col(refund_id_col)).otherwise(None)
            if refund_id_col
            else pl.lit(None, pl.String)
        ).alias("refund_id"),
    )


def _settlement(
    frame: pl.DataFrame, trades: re.Match[str], refunds: re.Match[str], line: int, file: str
) -> SettlementCheck:
    declared = []
    for m, what in ((trades, "交易合计"), (refunds, "退款合计")):
        fen = pl.select(yuan_to_fen(pl.lit(m.group(2)))).item()
        if fen is None:
            raise StatementError(file, [Finding(line, what, f"not an amount: {m.group(2)!r}")])
        declared.append((int(m.group(1)), int(fen)))
    sums = frame.select(
        (pl.col("kind") == "payment").sum().alias("n_pay"),
        pl.col("_received").filter(pl.col("kind") == "payment").sum().alias("pay"),
        (pl.col("kind") == "refund").sum().alias("n_ref"),
        pl.col("_received").filter(pl.col("kind") == "refund").sum().alias("ref"),
    ).row(0)
    n_pay, pay, n_ref, ref = (int(v or 0) for v in sums)
    return SettlementCheck(
        figures={
            "交易笔数": (declared[0][0], n_pay),
            "商家实收": (declared[0][1], pay),
            "退款笔数": (declared[1][0], n_ref),
            "商家实收退款": (declared[1][1], ref),
        }
    )
