"""CLI: ``users add|list|disable|enable`` — the people who sign in, and their roles.

The first administrator is created here (there is no user to sign in as before it):
``printf '%s' "$PASSWORD" | dianfei users add admin --role admin --password-stdin``.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dianfei.cli.common import fail, handle_errors, print_json
from dianfei.cli.context import database

users_app = typer.Typer(help="Users and roles: add, list, disable, enable.", no_args_is_help=True)


def _read_password() -> str:
    """The password from standard input: the first line, without its line ending (so that
    ``echo secret |`` and ``printf secret |`` give the same password)."""
    data = sys.stdin.readline()
    return data.rstrip("\r\n")


@users_app.command("add")
@handle_errors
def users_add(
    name: Annotated[str, typer.Argument(help="the sign-in name")],
    role: Annotated[str, typer.Option("--role", help="admin, billing_clerk, cashier, collector, "
                                                     "supervisor, auditor or customer")],
    customer: Annotated[str | None, typer.Option(
        "--customer", help="the customer a customer user is tied to")] = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="read the password from standard input")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a user (argon2 password hash; a customer user sees only their own customer)."""
    from datetime import UTC, datetime

    from dianfei.security.service import add_user

    if not password_stdin:
        fail("give the password on standard input with --password-stdin (never as an argument)")
    password = _read_password()
    with database().session() as s:
        user = add_user(s, username=name, role=role, password=password, customer_id=customer,
                        now=datetime.now(UTC))
        out = {"username": user.username, "role": user.role, "customer_id": user.customer_id}
    if json_out:
        print_json(out)
    else:
        typer.echo(f"user {name} added ({role}{', customer ' + customer if customer else ''})")


@users_app.command("list")
@handle_errors
def users_list(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every user with role, customer and whether active."""
    from dianfei.security.service import list_users

    with database().session() as s:
        rows = list_users(s)
    if json_out:
        print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['username']:<24} {r['role']:<14} {r['customer_id'] or '':<12} "
                   f"{'active' if r['active'] else 'disabled'}")


def _set_active(name: str, active: bool) -> None:
    from dianfei.security.service import set_active

    with database().session() as s:
        set_active(s, name, active)
    typer.echo(f"user {name} {'enabled' if active else 'disabled'}")


@users_app.command("disable")
@handle_errors
def users_disable(name: Annotated[str, typer.Argument()]) -> None:
    """Disable a user: no sign-in, and their tokens stop working at once."""
    _set_active(name, False)


@users_app.command("enable")
@handle_errors
def users_enable(name: Annotated[str, typer.Argument()]) -> None:
    _set_active(name, True)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
