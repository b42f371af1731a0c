"""Read-only commands start fast (issue 14: ≤ 0.5 s on 2 cores, timed by bench/cli_startup.py):
here, without a clock, that they import only what they run — the Typer app assembles every
command without the domain services, and a read-only command on a database pulls in SQLAlchemy
and its own table, not Polars, the web stack, Alembic or the posting chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dianfei.db.engine import Database

#: never needed to assemble the CLI or to run a read-only command on a database at the newest
#: schema (each is a tenth of a second or more of start-up)
HEAVY = ("polars", "numpy", "pyarrow", "fastapi", "starlette", "uvicorn", "jinja2", "alembic",
         "argon2", "cryptography", "httpx", "paho",
         # typer 0.29 coerces parameters through pydantic (~60 ms a command): pinned below it
         "pydantic")

_RUN = (
    "import json, sys\n"
    "sys.argv = ['dianfei', *json.loads(sys.argv[1])]\n"
    "from dianfei.cli.main import main\n"
    "try:\n"
    "    main()\n"
    "except SystemExit as exc:\n"
    "    assert not exc.code, exc.code\n"
    "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)))\n"
)


def _modules_after(env: dict[str, str], *args: str) -> tuple[str, set[str]]:
    """(stdout, the modules loaded) of ``dianfei ARGS`` run in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", _RUN, json.dumps(list(args))],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, set(json.loads(proc.stderr.rsplit("\nMODULES ", 1)[1]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules} & set(HEAVY))


def test_assembling_the_cli_imports_no_domain_code() -> None:
    code = ("import sys, json\nimport dianfei.cli.main\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    modules = set(json.loads(subprocess.run([sys.executable, "-c", code], check=True,
                                            capture_output=True, text=True).stdout))
    assert not _heavy(modules)
    assert "sqlalchemy" not in modules
    # the command modules and the few core helpers they share, nothing of the domain
    domain = {m for m in modules if m.startswith("dianfei.")
              and not m.startswith(("dianfei.cli", "dianfei.core", "dianfei.audit.actor"))}
    assert domain == {"dianfei.audit"}, domain


@pytest.mark.parametrize("args, table_module", [
    (("pay", "worklist", "--json"), "dianfei.payments.models"),
    (("jobs", "list", "--json"), "dianfei.jobs.models"),
    (("reconcile", "worklist", "--json"), "dianfei.payments.statement_models"),
])
def test_a_read_only_command_imports_only_what_it_reads(
        db: Database, db_env: dict[str, str], args: tuple[str, ...], table_module: str) -> None:
    out, modules = _modules_after(db_env, *args)
    assert json.loads(out) == []  # it did run, on the (empty) database
    assert table_module in modules
    assert not _heavy(modules)
    # the posting chain (ledger, customers, metering) is what made `pay worklist` slow
    for service in ("dianfei.payments.service", "dianfei.ledger.service",
                    "dianfei.customers.service", "dianfei.metering.service"):
        assert service not in modules, service
