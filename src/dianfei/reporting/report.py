"""Reports: the KPI table of ``dianfei kpi`` and the monthly collection report (电费回收月报)
a branch manager sends upward — KPIs and their trend, top arrears, the collector league table,
the channel mix, payment-plan performance and reconciliation status — as PDF (charts drawn as
vector graphics, CJK font embedded), XLSX (one sheet per table, native charts) or CSV files with
a UTF-8 BOM (so Excel and WPS on Chinese Windows read them). The tables are built once
(:func:`monthly`) and every format writes the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dianfei.core.clock import Period
from dianfei.core.csvsafe import safe_cell
from dianfei.core.errors import ValidationError
from dianfei.core.money import fmt_yuan

if TYPE_CHECKING:
    from dianfei.db.engine import Database

FORMATS = ("pdf", "xlsx", "csv")
#: accounts in the top-arrears table
TOP_ARREARS = 20


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


# -- the report's tables ----------------------------------------------------------------------------


@dataclass
class Sheet:
    """One table of the report: a file/sheet name, a bilingual title, columns and rows."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    #: columns holding yuan strings (written as numbers in XLSX)
    money: set[str] = field(default_factory=set)
    note: str = ""


@dataclass
class MonthlyReport:
    period: Period
    as_of: date
    kpis: dict[str, Any]
    funds: dict[str, Any]
    sheets: list[Sheet]

    def sheet(self, name: str) -> Sheet:
        return next(s for s in self.sheets if s.name == name)


def _v(value: Any) -> Any:
    return "" if value is None else value


def monthly(db: Database, period: Period, as_of: date) -> MonthlyReport:
    """Build every table of the monthly report of ``period`` as of ``as_of``."""
    import polars as pl

    from dianfei.collections.service import plan_outcomes
    from dianfei.customers.service import collectors, customer_names
    from dianfei.reporting.funds import audit
    from dianfei.reporting.kpi import TREND_PERIODS, compute, load_inputs, states

    inp = load_inputs(db, period, as_of, TREND_PERIODS)
    kpis = compute(inp, as_of, trend_periods=TREND_PERIODS)
    league = compute(inp, as_of, "collector")["groups"]
    funds = audit(db, period)
    sheets = [Sheet("kpi", "考核指标 KPIs", ["指标 KPI", "值 value"],
                    [[label, _v(kpis.get(key))] for label, key in KPI_LABELS])]
    sheets.append(Sheet(
        "trend", "月度趋势 monthly trend",
        ["period", "billed", "collected", "collection_rate", "overdue_amount", "overdue_rate",
         "avg_payment_days"],
        [[t["period"], t["billed"], t["collected"], _v(t["collection_rate"]), t["overdue_amount"],
          _v(t["overdue_rate"]), _v(t["avg_payment_days"])] for t in kpis["trend"]],
        money={"billed", "collected", "overdue_amount"}))
    # top arrears: what each customer still owes at D on the window's live bills
    state = states(inp, as_of).filter(pl.col("status") != "cancelled")
    owed = (state.with_columns((pl.col("amount") - pl.col("paid")).clip(lower_bound=0)
                               .alias("unpaid"))
            .filter(pl.col("unpaid") > 0)
            .group_by("customer_id").agg(pl.len().alias("bills"), pl.col("unpaid").sum(),
                                         pl.col("due_on").min().alias("oldest_due"))
            .sort(["unpaid", "customer_id"], descending=[True, False]).head(TOP_ARREARS)
            .join(inp.customers.select("customer_id", "region_id", "collector_id"),
                  on="customer_id", how="left"))
    with db.engine.connect() as conn:
        names = customer_names(conn, owed["customer_id"].to_list())
    sheets.append(Sheet(
        "top_arrears", f"欠费前{TOP_ARREARS}名 top arrears",
        ["customer_id", "name", "region", "collector", "unpaid_bills", "unpaid", "oldest_due_on",
         "days_past_due"],
        [[r["customer_id"], names.get(r["customer_id"], ""), _v(r["region_id"]),
          _v(r["collector_id"]), r["bills"], fmt_yuan(int(r["unpaid"])),
          r["oldest_due"].isoformat(), max((as_of - r["oldest_due"]).days, 0)]
         for r in owed.iter_rows(named=True)],
        money={"unpaid"}))
    who = {r["collector_id"]: r["name"] for r in collectors(db.engine).iter_rows(named=True)}
    ranked = sorted(league, key=lambda g: (g["collection_rate"] is None,
                                           -(g["collection_rate"] or 0), g["collector"]))
    sheets.append(Sheet(
        "collectors", "催费员排名 collector league table",
        ["rank", "collector", "name", "customers", "bills", "billed", "collected",
         "collection_rate", "overdue_amount", "overdue_rate", "avg_payment_days", "complaints"],
        [[i + 1, g["collector"], who.get(g["collector"], ""), g["customers"], g["bills"],
          g["billed"], g["collected"], _v(g["collection_rate"]), g["overdue_amount"],
          _v(g["overdue_rate"]), _v(g["avg_payment_days"]), g["complaints"]]
         for i, g in enumerate(ranked)],
        money={"billed", "collected", "overdue_amount"}))
    sheets.append(Sheet(
        "channels", "缴费渠道结构 channel mix", ["channel", "payments", "collected", "share"],
        [[c["channel"], c["payments"], c["collected"], _v(c["share"])] for c in kpis["channels"]],
        money={"collected"}))
    plans = {r["type"]: r for r in plan_outcomes(db, period.first_day, period.last_day)
             .iter_rows(named=True)}
    sheets.append(Sheet(
        "plans", "分期缴费协议 payment plans", ["outcome", "plans", "amount"],
        [[t, int(plans[t]["events"]) if t in plans else 0,
          fmt_yuan(int(plans[t]["amount"])) if t in plans else "0.00"]
         for t in ("plan_agreed", "plan_completed", "plan_broken")],
        money={"amount"},
        note="承诺缴费 promises to pay: not recorded by dianfei yet (no promise register)."))
    sheets.append(segments_sheet(db, as_of))
    sheets.append(Sheet(
        "reconciliation", "对账情况 reconciliation status",
        ["channel", "collected", "refunded", "settled", "difference", "worklist", "unexplained",
         "reconciled_days", "not_reconciled_days", "worklist_open", "ties"],
        [[c["channel"], c["collected"], c["refunded"], c["settled"], c["difference"],
          c["worklist"], c["unexplained"], c["reconciled_days"], len(c["not_reconciled_days"]),
          c["worklist_open"], "yes" if c["ties"] else "NO"] for c in funds["channels"]],
        money={"collected", "refunded", "settled", "difference", "worklist", "unexplained"},
        note=f"deposited (counter) {funds['deposited']}, till difference "
             f"{funds['till_difference']}, written off {funds['written_off']}"))
    return MonthlyReport(period, as_of, kpis, funds, sheets)


def segments_sheet(db: Database, as_of: date) -> Sheet:
    """The accounts in arrears and what they owe overdue by risk segment (客户分类), as the last
    daily collections run on or before ``as_of`` found them — the segments its ladders read."""
    from dianfei.collections.service import arrears_by_segment
    from dianfei.reporting.kpi import rate
    from dianfei.risk.service import segment_labels

    columns = ["segment", "label", "accounts", "arrears", "share"]
    found = arrears_by_segment(db, as_of)
    if found is None:
        return Sheet("segments", "欠费客户分类 arrears by segment", columns, [],
                     note=f"no collections run with segments on or before {as_of}")
    day, by = found
    labels = segment_labels()
    total = sum(v["arrears"] for v in by.values())
    return Sheet("segments", "欠费客户分类 arrears by segment", columns,
                 [[seg, labels.get(seg, seg), v["accounts"], fmt_yuan(v["arrears"]),
                   _v(rate(v["arrears"], total))] for seg, v in by.items()],
                 money={"arrears"},
                 note=f"the accounts in arrears as the collections run of {day} segmented them "
                      "(risk/segments.toml); share = of their overdue amount")


def write(report: MonthlyReport, fmt: str, out: Path, font_path: str | None = None) -> list[Path]:
    """Write the report as ``fmt`` (pdf, xlsx: one file; csv: one file per table in the
    directory ``out``); returns the files written."""
    if fmt not in FORMATS:
        raise ValidationError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "csv":
        return write_csv(report, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = render_xlsx(report) if fmt == "xlsx" else render_pdf(report, font_path)
    out.write_bytes(data)
    return [out]


def write_csv(report: MonthlyReport, folder: Path) -> list[Path]:
    """One CSV per table, UTF-8 with a BOM (Excel and WPS on Chinese Windows need it)."""
    import csv

    if folder.exists() and not folder.is_dir():
        raise ValidationError(f"--out {folder} must be a directory for --format csv")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for sheet in report.sheets:
        path = folder / f"{report.period}-{sheet.name}.csv"
        with path.open("w", encoding="utf-8-sig", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(sheet.columns)
            w.writerows([safe_cell(v) for v in row] for row in sheet.rows)
        written.append(path)
    return written


# -- XLSX ---------------------------------------------------------------------------------------------


def render_xlsx(report: MonthlyReport) -> bytes:
    """The workbook: one sheet per table, amounts as numbers with two places, native charts for
    the trend and the channel mix."""
    import io

    import xlsxwriter

    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True})
    bold = book.add_format({"bold": True})
    yuan = book.add_format({"num_format": "#,##0.00"})
    title = book.add_format({"bold": True, "font_size": 14})
    for sheet in report.sheets:
        ws = book.add_worksheet(sheet.name)
        ws.write(0, 0, f"{sheet.title} — {report.period} (as of {report.as_of})", title)
        for c, name in enumerate(sheet.columns):
            ws.write(2, c, name, bold)
            ws.set_column(c, c, max(12, len(name) + 2))
        for r, row in enumerate(sheet.rows, start=3):
            for c, value in enumerate(row):
                if sheet.columns[c] in sheet.money and value != "":
                    # the cell is a number so Excel can sum it; the yuan string has two places,
                    # which a double shows exactly at this format
                    ws.write_number(r, c, float(Decimal(str(value))), yuan)
                elif isinstance(value, str):
                    ws.write_string(r, c, value)  # never a formula, whatever the text starts with
                else:
                    ws.write(r, c, value)
        if sheet.note:
            ws.write(len(sheet.rows) + 4, 0, sheet.note)
        n = len(sheet.rows)
        if sheet.name == "trend" and n:
            chart = book.add_chart({"type": "column"})
            chart.add_series({"name": "collection_rate", "categories": [sheet.name, 3, 0, 2 + n, 0],
                              "values": [sheet.name, 3, 3, 2 + n, 3]})
            chart.add_series({"name": "overdue_rate", "categories": [sheet.name, 3, 0, 2 + n, 0],
                              "values": [sheet.name, 3, 5, 2 + n, 5]})
            chart.set_title({"name": "回收率与逾期率 collection and overdue rates"})
            ws.insert_chart(n + 6, 0, chart)
        if sheet.name == "channels" and n:
            chart = book.add_chart({"type": "pie"})
            chart.add_series({"name": "collected", "categories": [sheet.name, 3, 0, 2 + n, 0],
                              "values": [sheet.name, 3, 2, 2 + n, 2]})
            chart.set_title({"name": "渠道结构 channel mix"})
            ws.insert_chart(n + 6, 0, chart)
    book.close()
    return buf.getvalue()


# -- PDF ----------------------------------------------------------------------------------------------


def render_pdf(report: MonthlyReport, font_path: str | None = None) -> bytes:
    """A4 landscape, CJK font embedded, text extractable: the KPIs, two charts, every table."""
    from fpdf import FPDF

    from dianfei.notify.service import cjk_font

    font = cjk_font(font_path)
    pdf = FPDF(orientation="landscape", unit="mm", format="A4")
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_title(f"电费回收月报 {report.period}")
    pdf.set_creator("dianfei")
    pdf.add_font("cjk", fname=str(font.path), collection_font_number=font.index)
    pdf.add_page()
    pdf.set_font("cjk", size=16)
    pdf.cell(0, 9, f"电费回收月报 Monthly collection report — {report.period}",
             new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=9)
    pdf.cell(0, 6, f"as of {report.as_of} · amounts in yuan · rates are fractions · "
                   "definitions: docs/kpi.md", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    top = pdf.get_y()
    _table(pdf, report.sheet("kpi"), widths=[70, 30])
    # charts to the right of the KPI table
    trend = report.kpis["trend"]
    _bar_chart(pdf, 130, top, 150, 60, "电费回收率 collection rate by period",
               [t["period"][2:] for t in trend], [t["collection_rate"] or 0.0 for t in trend],
               percent=True)
    chans = report.kpis["channels"]
    _bar_chart(pdf, 130, top + 70, 150, 55, "缴费渠道结构 channel mix (share of collected)",
               [c["channel"] for c in chans], [c["share"] or 0.0 for c in chans], percent=True)
    for name in ("trend", "top_arrears", "collectors", "channels", "plans", "reconciliation"):
        pdf.add_page()
        _table(pdf, report.sheet(name))
    return bytes(pdf.output())


def _table(pdf: Any, sheet: Sheet, widths: list[float] | None = None) -> None:
    pdf.set_font("cjk", size=12)
    pdf.cell(0, 8, sheet.title, new_x="LMARGIN", new_y="NEXT")
    size = 8 if len(sheet.columns) <= 8 else 7
    pdf.set_font("cjk", size=size)
    full = pdf.w - pdf.l_margin - pdf.r_margin
    widths = widths or [full / len(sheet.columns)] * len(sheet.columns)
    height = size * 0.65
    for c, name in enumerate(sheet.columns):
        pdf.set_text_color(90)
        pdf.cell(widths[c], height, name, border="B", align="L" if c == 0 else "R")
    pdf.ln(height)
    pdf.set_text_color(0)
    if not sheet.rows:
        pdf.cell(0, height, "(none)", new_x="LMARGIN", new_y="NEXT")
    for row in sheet.rows:
        for c, value in enumerate(row):
            pdf.cell(widths[c], height, str(value), border="B", align="L" if c == 0 else "R")
        pdf.ln(height)
    if sheet.note:
        pdf.ln(1)
        pdf.cell(0, height, sheet.note, new_x="LMARGIN", new_y="NEXT")


def _bar_chart(pdf: Any, x: float, y: float, w: float, h: float, title: str,
               labels: list[str], values: list[float], *, percent: bool = False) -> None:
    """A bar chart drawn with the PDF's own vector graphics (no image library): bars scaled to
    the largest value, each labelled with its value."""
    pdf.set_font("cjk", size=9)
    pdf.set_xy(x, y)
    pdf.cell(w, 5, title)
    if not values:
        return
    top, base = y + 8, y + h - 6
    peak = max(max(values), 1e-9)
    slot = w / len(values)
    bar = slot * 0.6
    pdf.set_draw_color(120)
    pdf.line(x, base, x + w, base)
    pdf.set_font("cjk", size=6)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        left = x + i * slot + (slot - bar) / 2
        height = (base - top) * (value / peak)
        pdf.set_fill_color(46, 117, 182)
        pdf.rect(left, base - height, bar, height, style="F")
        pdf.set_xy(x + i * slot, base - height - 4)
        pdf.cell(slot, 4, f"{value:.2%}" if percent else f"{value}", align="C")
        pdf.set_xy(x + i * slot, base + 0.5)
        pdf.cell(slot, 4, label, align="C")
    pdf.set_draw_color(0)
