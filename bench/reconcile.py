"""Reconciliation benchmark: a 1,000,000-line channel statement in the channel's real format
against the payments table, timed parse + load + match + report.

    python -m bench.reconcile --lines 1000000 --channel wechatpay [--db none|sqlite|postgresql]

The statement is generated in the real file format (WeChat Pay ALL trade bill with backtick
fields and summary rows, or the GBK Alipay business-detail CSV); the ledger side is the payments
table rows of the same day with planted discrepancies (0.1% missing from the ledger, 0.1% missing
from the statement, 0.05% amount mismatches, 0.05% duplicate lines). With ``--db`` the rows are
written to a fresh database and read back as reconciliation does (the read is timed); with
``none`` the payments frame is handed to the matcher directly. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

DAY = date(2024, 3, 5)


def _yuan(col: pl.Expr) -> pl.Expr:
    return (col // 100).cast(pl.String) + "." + (col % 100).cast(pl.String).str.pad_start(2, "0")


def generate(n: int, channel: str, tmp: Path) -> tuple[Path, pl.DataFrame, dict[str, int]]:
    """The statement file and the payments table rows, with planted discrepancies."""
    i = pl.int_range(0, n, eager=True, dtype=pl.Int64)
    base = pl.DataFrame({"i": i}).with_columns(
        (pl.lit("4200002024030500") + pl.col("i").cast(pl.String).str.pad_start(12, "0")).alias("txn"),
        (pl.lit("DF20240305") + pl.col("i").cast(pl.String).str.pad_start(10, "0")).alias("order_no"),
        (1000 + (pl.col("i") * 7919) % 50000).alias("amount"),
        (pl.lit(datetime(2024, 3, 5, 0, 0, 1)) + pl.duration(seconds=pl.col("i") * 86000 // n))
        .dt.strftime("%Y-%m-%d %H:%M:%S")
        .alias("t"),
    )
    dups = base.filter(pl.col("i") % 2000 == 7)  # 0.05% repeated lines
    lines = pl.concat([base, dups]).sort("i")
    if channel == "wechatpay":
        fee = pl.col("amount") * 6 // 1000
        body = lines.select(
            pl.concat_str(
                [
                    pl.lit("`") + pl.col("t"),
                    pl.lit("`wx8888888888888888"),
                    pl.lit("`1900000109"),
                    pl.lit("`0"),
                    pl.lit("`"),
                    pl.lit("`") + pl.col("txn"),
                    pl.lit("`") + pl.col("order_no"),
                    pl.lit("`oUpF8uMuAJO"),
                    pl.lit("`NATIVE"),
                    pl.lit("`SUCCESS"),
                    pl.lit("`OTHERS"),
                    pl.lit("`CNY"),
                    pl.lit("`") + _yuan(pl.col("amount")),
                    pl.lit("`0.00"),
                    pl.lit("`0"),
                    pl.lit("`0"),
                    pl.lit("`0.00"),
                    pl.lit("`0.00"),
                    pl.lit("`"),
                    pl.lit("`"),
                    pl.lit("`电费"),
                    pl.lit("`"),
                    pl.lit("`") + _yuan(fee) + "000",
                    pl.lit("`0.60%"),
                    pl.lit("`") + _yuan(pl.col("amount")),
                    pl.lit("`0.00"),
                    pl.lit("`"),
                ],
                separator=",",
            ).alias("x")
        )
        total = int(lines["amount"].sum())
        fees = int(lines.select((pl.col("amount") * 6 // 1000).sum()).item())
        from tests.payments.statements.builders import WECHAT_HEADER, WECHAT_SUMMARY, yuan

        head = WECHAT_HEADER + "\r\n"
        tail = (
            f"{WECHAT_SUMMARY}\r\n`{lines.height},`{yuan(total)},`0.00,`0.00,`{yuan(fees)}000,"
            f"`{yuan(total)},`0.00\r\n"
        )
        path = tmp / "wechat_all_20240305.csv"
        encoding = "utf-8"
    else:
        body = lines.select(
            pl.concat_str(
                [
                    pl.col("txn") + "\t",
                    pl.col("order_no") + "\t",
                    pl.lit("交易"),
                    pl.lit("电费缴费"),
                    pl.col("t"),
                    pl.col("t"),
                    pl.lit(""),
                    pl.lit(""),
                    pl.lit(""),
                    pl.lit(""),
                    pl.lit("138****0000"),
                    _yuan(pl.col("amount")),
                    _yuan(pl.col("amount")),
                    pl.lit("0.00"),
                    pl.lit("0.00"),
                    pl.lit("0.00"),
                    pl.lit("0.00"),
                    pl.lit("0.00"),
                    pl.lit(""),
                    pl.lit("0.00"),
                    pl.lit("0.00"),
                    pl.lit(""),
                    pl.lit("-") + _yuan(pl.col("amount") * 6 // 1000),
                    pl.lit("0.00"),
                    pl.lit(""),
                ],
                separator=",",
            ).alias("x")
        )
        from tests.payments.statements.builders import ALIPAY_HEADER, yuan

        total = int(lines["amount"].sum())
        head = (
            "#支付宝业务明细查询\r\n#账号：[20881234567890120156]\r\n"
            "#起始日期：[2024年03月05日 00:00:00]   终止日期：[2024年03月06日 00:00:00]\r\n"
            "#-----------------------------------------业务明细列表----------------------------------------\r\n"
            + ALIPAY_HEADER
            + "\r\n"
        )
        tail = (
            "#-----------------------------------------业务明细列表结束------------------------------------\r\n"
            f"#交易合计：{lines.height}笔，商家实收共{yuan(total)}元，商家优惠共0.00元\r\n"
            "#退款合计：0笔，商家实收退款共0.00元，商家优惠退款共0.00元\r\n"
            "#导出时间：[2024年03月06日 09:21:10]\r\n"
        )
        path = tmp / "alipay_20240305_业务明细.csv"
        encoding = "gbk"
    with path.open("wb") as fh:
        fh.write(head.encode(encoding))
        text = "\r\n".join(body["x"].to_list()) + "\r\n"
        fh.write(text.encode(encoding))
        fh.write(tail.encode(encoding))
    # the ledger: everything but every 1000th payment (missing_in_ledger), plus extra payments
    # the statement lacks, and a changed amount on every 2000th
    ledger = base.filter(pl.col("i") % 1000 != 3).select(
        (pl.lit("P") + pl.col("txn")).alias("payment_id"),
        pl.col("txn").alias("transaction_id"),
        "order_no",
        (pl.lit("A") + (pl.col("i") % 500000).cast(pl.String)).alias("account_id"),
        pl.when(pl.col("i") % 2000 == 11)
        .then(pl.col("amount") + 1)
        .otherwise(pl.col("amount"))
        .alias("amount"),
        pl.lit(DAY).alias("business_date"),
        pl.lit("posted").alias("status"),
        pl.lit("callback").alias("source"),
    )
    extra = pl.DataFrame({"k": pl.int_range(0, n // 1000, eager=True)}).select(
        (pl.lit("PX") + pl.col("k").cast(pl.String)).alias("payment_id"),
        (pl.lit("X") + pl.col("k").cast(pl.String)).alias("transaction_id"),
        pl.lit(None, pl.String).alias("order_no"),
        pl.lit("A1").alias("account_id"),
        pl.lit(100, pl.Int64).alias("amount"),
        pl.lit(DAY).alias("business_date"),
        pl.lit("posted").alias("status"),
        pl.lit("callback").alias("source"),
    )
    ledger = pl.concat([ledger, extra])
    planted = {
        "missing_in_ledger": n // 1000 + (1 if n % 1000 > 3 else 0),
        "missing_in_statement": extra.height,
        "duplicates": dups.height,
    }
    return path, ledger, planted


def run(n: int, channel: str, db: str) -> dict[str, Any]:
    from dianfei.payments.reconcile import discrepancies, match, totals
    from dianfei.payments.statements import parse_statement

    tmp = Path(tempfile.mkdtemp(prefix="dianfei-bench-rec-"))
    t0 = time.perf_counter()
    path, ledger, planted = generate(n, channel, tmp)
    out: dict[str, Any] = {
        "lines": n,
        "channel": channel,
        "db": db,
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "generate_s": round(time.perf_counter() - t0, 2),
    }
    load_ledger = None
    if db != "none":
        load_ledger = _prepare_db(db, tmp, ledger, out, channel)
    t_start = time.perf_counter()
    statement = parse_statement(channel, path)
    t_parse = time.perf_counter()
    if load_ledger is not None:
        ledger = load_ledger()
    t_load = time.perf_counter()
    m = match(statement.frame, ledger, DAY)
    t_match = time.perf_counter()
    work = discrepancies(m)
    figures = totals(m)
    report = {"settlement_check": statement.check.as_json(), "totals": figures, "worklist_rows": work.height}
    t_report = time.perf_counter()
    assert statement.check.ok, statement.check.as_json()
    assert figures["missing_in_ledger"]["count"] == planted["missing_in_ledger"], figures
    assert figures["missing_in_statement"]["count"] == planted["missing_in_statement"], figures
    assert figures["duplicates"]["count"] == planted["duplicates"], figures
    out.update(
        {
            "parse_s": round(t_parse - t_start, 2),
            "load_ledger_s": round(t_load - t_parse, 2),
            "match_s": round(t_match - t_load, 2),
            "report_s": round(t_report - t_match, 2),
            "total_s": round(t_report - t_start, 2),
            "matched": figures["matched"]["count"],
            "amount_mismatch": figures["amount_mismatch"]["count"],
            "missing_in_ledger": figures["missing_in_ledger"]["count"],
            "missing_in_statement": figures["missing_in_statement"]["count"],
            "duplicates": figures["duplicates"]["count"],
            "worklist_rows": report["worklist_rows"],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    )
    return out


def _prepare_db(db: str, tmp: Path, ledger: pl.DataFrame, out: dict[str, Any], channel: str):  # type: ignore[no-untyped-def]
    from bench.billrun import _database, _drop
    from dianfei.core.settings import load_settings
    from dianfei.db.bulk import write_frame
    from dianfei.db.engine import open_database
    from dianfei.db.frames import read_frame

    url, pg_name = _database(db, tmp)
    database = open_database(load_settings({"DIANFEI_DATABASE_URL": url, "DIANFEI_DATA_DIR": str(tmp)}))
    rows = ledger.with_columns(
        pl.lit(channel).alias("channel"),
        pl.lit(datetime(2024, 3, 5, 2), pl.Datetime("us", "UTC")).alias("paid_at"),
        pl.lit(datetime(2024, 3, 5, 2), pl.Datetime("us", "UTC")).alias("posted_at"),
        pl.col("account_id").alias("customer_id"),
    )
    t = time.perf_counter()
    with database.engine.begin() as conn:
        write_frame(conn, "payments", rows)
    out["write_payments_s"] = round(time.perf_counter() - t, 2)

    def load() -> pl.DataFrame:
        try:
            return read_frame(
                database.engine,
                "SELECT payment_id, transaction_id, order_no, account_id, amount, "
                "business_date, status, source FROM payments WHERE channel = :c AND "
                "business_date BETWEEN :a AND :b",
                {"c": channel, "a": date(2024, 3, 4), "b": date(2024, 3, 6)},
                dates=("business_date",),
            )
        finally:
            database.engine.dispose()
            _drop(pg_name)

    return load


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--channel", choices=("wechatpay", "alipay"), default="wechatpay")
    ap.add_argument("--db", choices=("none", "sqlite", "postgresql"), default="none")
    args = ap.parse_args()
    print(json.dumps(run(args.lines, args.channel, args.db), ensure_ascii=False))


if __name__ == "__main__":
    main()
