"""``dianfei quote`` and ``dianfei tariffs list``: thin shells over ``dianfei.tariffs.service``.

Nothing heavy is imported here (no Polars, no SQLAlchemy) so that ``dianfei quote`` answers fast.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.core.clock import Period
from dianfei.core.errors import ValidationError
from dianfei.core.money import parse_decimal


def _qty(text: str | None, flag: str) -> Decimal | None:
    if text is None:
        return None
    return parse_decimal(text, flag, places=2, allow_negative=False)


def _tariff_dir() -> Path | None:
    from dianfei.core.settings import load_settings

    return load_settings().billing.tariff_dir


def _print_quote(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['tariff']}  {result['period']}  "
                        f"(版本 version {result['version']})")
    for header, justify in (("项目 Item", "left"), ("数量 Quantity", "right"),
                            ("单位 Unit", "left"), ("单价 Unit price", "right"),
                            ("金额 Amount", "right")):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for line in result["lines"]:
        item = line["description"]
        if "power_factor" in line:
            item += f"  (PF {line['power_factor']}, {line['percent']}%)"
        table.add_row(item, line["quantity"], line["unit"], line["unit_price"], line["amount"])
    table.add_section()
    table.add_row("合计 Total", "", "", "", result["total"])
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add ``quote`` and the ``tariffs`` group to the ``dianfei`` command."""

    @app.command("quote")
    @handle_errors
    def quote_cmd(
        tariff: str = typer.Option(..., "--tariff", help="tariff id, e.g. cn-zj-residential"),
        period: str = typer.Option(..., "--period", help="billing period YYYY-MM"),
        kwh: str = typer.Option(..., "--kwh", help="the period's active energy, kWh"),
        ytd_kwh: str = typer.Option("0", "--ytd-kwh",
                                    help="this year's kWh before this bill (annual tiers)"),
        sharp_kwh: str | None = typer.Option(None, "--sharp-kwh", help="尖峰 kWh"),
        peak_kwh: str | None = typer.Option(None, "--peak-kwh", help="高峰 kWh"),
        flat_kwh: str | None = typer.Option(None, "--flat-kwh", help="平段 kWh"),
        valley_kwh: str | None = typer.Option(None, "--valley-kwh", help="低谷 kWh"),
        kvarh: str | None = typer.Option(None, "--kvarh",
                                         help="reactive energy, kvarh (power-factor adjustment)"),
        capacity_kva: str | None = typer.Option(None, "--capacity-kva",
                                                help="contracted capacity, kVA (basic charge)"),
        max_demand_kw: str | None = typer.Option(None, "--max-demand-kw",
                                                 help="maximum demand, kW (basic charge)"),
        low_income: bool = typer.Option(False, "--low-income",
                                        help="低保/五保 household: apply the free allowance"),
        as_json: bool = typer.Option(False, "--json", help="print JSON"),
    ) -> None:
        """Itemised charge for one usage (计费试算), without touching the database."""
        from dianfei.tariffs.service import Usage, load_catalogue, quote

        if capacity_kva is not None and max_demand_kw is not None:
            raise ValidationError("give either --capacity-kva or --max-demand-kw, not both")
        usage_kwh = _qty(kwh, "--kwh")
        assert usage_kwh is not None
        usage = Usage(
            kwh=usage_kwh,
            ytd_kwh=_qty(ytd_kwh, "--ytd-kwh") or Decimal(0),
            sharp_kwh=_qty(sharp_kwh, "--sharp-kwh"),
            peak_kwh=_qty(peak_kwh, "--peak-kwh"),
            flat_kwh=_qty(flat_kwh, "--flat-kwh"),
            valley_kwh=_qty(valley_kwh, "--valley-kwh"),
            kvarh=_qty(kvarh, "--kvarh"),
            capacity_kva=_qty(capacity_kva, "--capacity-kva"),
            max_demand_kw=_qty(max_demand_kw, "--max-demand-kw"),
            low_income=low_income,
        )
        result = quote(load_catalogue(_tariff_dir()), tariff, Period.parse(period), usage)
        if as_json:
            print_json(result)
        else:
            _print_quote(result)

    tariffs_app = typer.Typer(help="Tariffs (电价): the catalogue and its dated versions.",
                              no_args_is_help=True)

    @tariffs_app.command("list")
    @handle_errors
    def list_cmd(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
        """The tariff ids with their versions' effective dates and sources."""
        from dianfei.tariffs.service import load_catalogue

        catalogue = load_catalogue(_tariff_dir())
        out: list[dict[str, Any]] = []
        for tariff_id in catalogue.ids():
            t = catalogue.tariff(tariff_id)
            out.append({
                "id": t.tariff_id,
                "name": t.name,
                "customer_class": t.customer_class,
                "versions": [{
                    "effective_from": v.effective_from.isoformat(),
                    "effective_to": v.effective_to.isoformat() if v.effective_to else None,
                    "source": v.source,
                } for v in t.versions],
            })
        if as_json:
            print_json(out)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title="电价目录 Tariffs")
        for header in ("id", "名称 Name", "类别 Class", "版本 Versions"):
            table.add_column(header)
        for item in out:
            versions = "\n".join(f"{v['effective_from']} – {v['effective_to'] or '…'}"
                                 for v in item["versions"])
            table.add_row(item["id"], item["name"], item["customer_class"], versions)
        Console().print(table)

    app.add_typer(tariffs_app, name="tariffs")
