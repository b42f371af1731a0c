"""`dianfei quote` and `dianfei tariffs list`: JSON shape, errors, and a fast start."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from dianfei.cli.main import app

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_quote_json_shape() -> None:
    code, out = _run("quote", "--tariff", "cn-zj-residential", "--period", "2026-03",
                     "--kwh", "300", "--ytd-kwh", "2700", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data == {
        "tariff": "cn-zj-residential",
        "period": "2026-03",
        "version": "2012-07-01",
        "lines": [
            {"code": "energy_tier1", "description": "第一档电量 Tier 1 energy",
             "quantity": "60.00", "unit": "kWh", "unit_price": "0.5380", "amount": "32.28"},
            {"code": "energy_tier2", "description": "第二档电量 Tier 2 energy",
             "quantity": "240.00", "unit": "kWh", "unit_price": "0.5880", "amount": "141.12"},
        ],
        "total": "173.40",
    }


def test_quote_with_kvarh_always_has_pf_line() -> None:
    code, out = _run("quote", "--tariff", "cn-general-commercial", "--period", "2026-03",
                     "--kwh", "1000", "--peak-kwh", "400", "--flat-kwh", "300",
                     "--kvarh", "484.32", "--json")
    assert code == 0, out
    pf = [ln for ln in json.loads(out)["lines"] if ln["code"] == "pf_adjustment"]
    # 1000/√(1000² + 484.32²) = 0.9000 → 0.90 → standard 0.85 table: −0.50 %.
    assert pf[0]["power_factor"] == "0.90" and pf[0]["percent"] == "-0.50"


def test_quote_table_output() -> None:
    code, out = _run("quote", "--tariff", "cn-zj-residential", "--period", "2026-03",
                     "--kwh", "100", "--low-income")
    assert code == 0, out
    assert "48.42" in out and "Total" in out


def test_quote_errors_exit_2_with_one_line() -> None:
    cases = [
        ("--tariff", "nope", "--period", "2026-03", "--kwh", "1"),
        ("--tariff", "cn-zj-residential", "--period", "2026-13", "--kwh", "1"),
        ("--tariff", "cn-zj-residential", "--period", "2026-03", "--kwh", "-1"),
        ("--tariff", "cn-zj-residential", "--period", "2026-03", "--kwh", "1.234"),
        ("--tariff", "cn-large-industry-example", "--period", "2026-03", "--kwh", "1",
         "--valley-kwh", "1", "--capacity-kva", "10", "--max-demand-kw", "10"),
        ("--tariff", "cn-zj-residential-tou", "--period", "2026-03", "--kwh", "10",
         "--peak-kwh", "8", "--valley-kwh", "8"),
    ]
    for args in cases:
        code, out = _run("quote", *args, "--json")
        assert code == 2, (args, out)
        assert out.strip().startswith("error: ") and out.strip().count("\n") == 0, out


def test_tariffs_list_json() -> None:
    code, out = _run("tariffs", "list", "--json")
    assert code == 0, out
    data = json.loads(out)
    ids = [t["id"] for t in data]
    for wanted in ("cn-zj-residential", "cn-zj-residential-tou", "cn-large-industry-example",
                   "cn-general-commercial", "cn-general-industrial",
                   "cn-agricultural-irrigation", "cn-gd-residential"):
        assert wanted in ids
    zj = data[ids.index("cn-zj-residential")]
    assert set(zj) == {"id", "name", "customer_class", "versions"}
    assert zj["versions"][-1]["effective_to"] is None
    assert all(set(v) == {"effective_from", "effective_to", "source"} for v in zj["versions"])


def test_quote_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from dianfei.cli.main import app\n"
        "r = CliRunner().invoke(app, ['quote', '--tariff', 'cn-zj-residential', '--period',"
        " '2026-03', '--kwh', '300', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('polars', 'sqlalchemy', 'numpy', 'pyarrow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
