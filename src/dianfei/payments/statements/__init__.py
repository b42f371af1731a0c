"""Channel statements (对账单): each channel's daily file parsed into one Polars frame.

``parse_statement(channel, file)`` picks the parser: Alipay business-detail bill (zip or CSV),
WeChat Pay trade bill, or a bank result file by its layout. Every parser returns a
:class:`Statement` (frame of STATEMENT_SCHEMA + the file's own totals checked against its details)
or raises :class:`StatementError` naming the file, line and field of every problem.
"""

from __future__ import annotations

from pathlib import Path

from dianfei.core.errors import ValidationError
from dianfei.payments.statements.common import (
    STATEMENT_SCHEMA,
    Finding,
    SettlementCheck,
    Statement,
    StatementError,
)

__all__ = ["STATEMENT_SCHEMA", "Finding", "SettlementCheck", "Statement", "StatementError", "parse_statement"]

STATEMENT_CHANNELS = ("alipay", "wechatpay", "bank")


def parse_statement(
    channel: str,
    source: str | Path | bytes,
    *,
    name: str | None = None,
    bank: str | None = None,
    layout_dir: Path | None = None,
    encoding: str = "auto",
) -> Statement:
    """Parse a channel's statement file. ``bank`` names the layout of a bank result file."""
    if channel == "alipay":
        from dianfei.payments.statements.alipay import parse_alipay_bill

        return parse_alipay_bill(source, name=name, encoding=encoding)
    if channel == "wechatpay":
        from dianfei.payments.statements.wechatpay import parse_wechatpay_bill

        return parse_wechatpay_bill(source, name=name, encoding=encoding)
    if channel == "bank":
        from dianfei.payments.layouts import load_layout
        from dianfei.payments.statements.bankfile import bank_result_statement, read_bank_result

        if not bank:
            raise ValidationError("a bank statement needs its layout: --bank CODE")
        return bank_result_statement(read_bank_result(load_layout(bank, layout_dir), source, name=name))
    raise ValidationError(f"channel must be one of {', '.join(STATEMENT_CHANNELS)}, got {channel!r}")
