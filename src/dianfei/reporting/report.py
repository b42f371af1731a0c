"""Reports: the KPI table of ``dianfei kpi`` and the monthly collection report (PDF, XLSX)."""

from __future__ import annotations

from typing import Any


def kpi_table(result: dict[str, Any]) -> None:
    """The KPIs as a terminal table (``dianfei kpi`` without ``--json``; the demo summary)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"KPIs {result['period']} as of {result['as_of']}")
    table.add_column("KPI")
    table.add_column("value", justify="right")
    for label, key in KPI_LABELS:
        value = result.get(key)
        table.add_row(label, "—" if value is None else str(value))
    Console().print(table)


#: (label, key) of the headline figures, zh-CN first
KPI_LABELS = (
    ("应收电费 billed (yuan)", "billed"),
    ("实收电费 collected (yuan)", "collected"),
    ("电费回收率 collection rate", "collection_rate"),
    ("逾期欠费 overdue (yuan)", "overdue_amount"),
    ("逾期欠费率 overdue arrears rate", "overdue_rate"),
    ("平均缴费周期 mean payment days", "avg_payment_days"),
    ("缴费周期中位数 median payment days", "median_payment_days"),
    ("应收账款周转天数 DSO (days)", "dso"),
    ("呆账率 bad-debt rate", "bad_debt_rate"),
    ("核销率 write-off rate", "write_off_rate"),
    ("抄表成功率 read success rate", "read_success_rate"),
    ("通知送达率 notice delivery rate", "notice_delivery_rate"),
    ("停电风险敞口天数 days of exposure", "days_of_exposure"),
    ("投诉率 complaints per 10,000 customers", "complaint_rate"),
    ("满意度 satisfaction (1–5)", "satisfaction"),
)


def funds_table(result: dict[str, Any]) -> None:
    """The fund-flow audit as a terminal table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"fund flows {result['from']}..{result['to']} — billed {result['billed']}, "
                        f"deposited {result['deposited']}, written off {result['written_off']}")
    cols = ("channel", "collected", "refunded", "settled", "difference", "worklist",
            "unexplained", "not_reconciled")
    for col in cols:
        table.add_column(col, justify="left" if col == "channel" else "right")
    for c in result["channels"]:
        table.add_row(*[str(c[k]) for k in cols], style=None if c["ties"] else "bold red")
    Console().print(table)
