"""The deployment files in deploy/ stay true: every dianfei command line in the systemd units
parses with today's CLI (a renamed option would otherwise be found by a failing server at
night), and the units name the environment file and the data directory the docs describe."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest
import typer

from dianfei.cli.main import app

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_every_command_of_the_units_parses(path: Path) -> None:
    service = unit(path)["Service"]
    lines = [service[k] for k in ("ExecStartPre", "ExecStart") if k in service]
    assert lines and service["EnvironmentFile"] == "/etc/dianfei/dianfei.env"
    assert "/srv/dianfei/var" in service["ReadWritePaths"]
    command = typer.main.get_command(app)
    for line in lines:
        argv = shlex.split(line)
        assert argv[0].endswith("/dianfei"), line
        # resolve the sub-command chain and parse its options exactly as a start would
        group: object = command
        args = argv[1:]
        ctx = None
        # walk the sub-command chain; the last one parses its options (an unknown option or a
        # wrong value raises, as it would when systemd starts the unit)
        while hasattr(group, "commands"):
            assert args, f"{path.name}: {line!r} names a group, not a command"
            sub = group.commands.get(args[0])
            assert sub is not None, f"{path.name}: no command {args[0]!r} in {line!r}"
            ctx = sub.make_context(args[0], args[1:], parent=ctx)
            group = sub
            args = [*getattr(ctx, "_protected_args", []), *ctx.args]
        assert not args, f"{path.name}: {line!r} left {args!r} unparsed"


def test_the_nginx_site_passes_the_request_id_and_limits_bodies() -> None:
    site = (DEPLOY / "nginx" / "dianfei.conf").read_text(encoding="utf-8")
    assert "proxy_pass http://dianfei;" in site and "server 127.0.0.1:8000;" in site
    assert "X-Request-ID $request_id" in site and "client_max_body_size" in site
    assert "Strict-Transport-Security" in site
