"""CLI: ``dianfei approvals list|show|request|approve|reject`` — maker-checker (四眼原则).

The acting user is a user of ``dianfei users`` (their role decides what they may ask for or
decide): ``--as NAME``, or ``DIANFEI_USER`` when the flag is left out. The command runs with the
database's credentials, so it trusts the operator to name themself, as every command does; the
audit chain records the operating-system user (``cli:…``) beside the named maker and checker.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.core.errors import ValidationError

if TYPE_CHECKING:
    from dianfei.security.service import Principal

approvals_app = typer.Typer(help="Maker-checker approvals (四眼原则): waivers, write-offs, bill "
                                 "corrections, suspensions, tariff changes.",
                            no_args_is_help=True)

AS_HELP = "the user acting (default: DIANFEI_USER)"


def register(app: typer.Typer) -> None:
    app.add_typer(approvals_app, name="approvals")


def acting_user(name: str | None) -> Principal:
    """The enabled user a command acts as: ``--as`` or ``DIANFEI_USER``."""
    from dianfei.cli.context import database
    from dianfei.security.service import active_user

    name = (name or os.environ.get("DIANFEI_USER") or "").strip()
    if not name:
        raise ValidationError("name the acting user: --as NAME or DIANFEI_USER=NAME")
    with database().session() as s:
        return active_user(s, name)


def echo_request(out: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(out)
        return
    amount = f", {out['amount']} yuan" if out.get("amount") else ""
    typer.echo(f"request {out['request_id']}: {out['kind']} of {out['subject']}{amount} — "
               f"{out['state']} (asked by {out['requested_by']}"
               + (f", {out['state']} by {out['decided_by']})" if out.get("decided_by") else ")"))
    if out.get("decision_reason"):
        typer.echo(f"  reason: {out['decision_reason']}")
    if out.get("result"):
        typer.echo(f"  result: {json.dumps(out['result'], ensure_ascii=False)}")


def ask(kind: str, payload: dict[str, Any], reason: str, maker: str | None,
        checker: str | None) -> dict[str, Any]:
    """Store a request as ``maker``; with ``checker``, approve it at once (the explicit
    approval step the older commands take as ``--approved-by``)."""
    from dianfei.approvals import service
    from dianfei.cli.context import clock_from_env, database

    db, clock = database(), clock_from_env()
    who = acting_user(maker)
    with db.session() as s:
        request_id = service.request(s, kind_name=kind, payload=payload, reason=reason,
                                     maker=who, clock=clock).request_id
    if checker is None:
        return service.show(db, request_id)
    return service.approve(db, request_id, checker=acting_user(checker), clock=clock)


@approvals_app.command("list")
@handle_errors
def approvals_list(
    kind: Annotated[str | None, typer.Option(help="waiver, write_off, bill_correction, "
                                                  "suspension, tariff_change, account_closure")] = None,
    state: Annotated[str | None, typer.Option(
        help="pending, executed, rejected, expired, withdrawn")] = None,
    limit: Annotated[int, typer.Option(help="at most this many (1–500)")] = 50,
    offset: Annotated[int, typer.Option(help="skip this many (newest first)")] = 0,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approval requests, newest first (expired ones are closed and the rules' suspension
    orders awaiting approval raised first)."""
    from dianfei.approvals import service
    from dianfei.cli.context import clock_from_env, database

    db = database()
    service.housekeeping(db, clock_from_env())
    page = service.list_requests(db, kind_name=kind, state=state, limit=limit, offset=offset)
    if json_out:
        print_json(page)
        return
    for r in page["items"]:
        amount = r["amount"] or ""
        typer.echo(f"{r['request_id']}\t{r['state']}\t{r['kind']}\t{r['subject']}\t{amount}\t"
                   f"{r['requested_by']}\t{r['requested_at']}")
    typer.echo(f"{len(page['items'])} of {page['total']}")


@approvals_app.command("show")
@handle_errors
def approvals_show(request_id: int,
                   json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One request: what was asked, by whom, the decision and what the change did."""
    from dianfei.approvals import service
    from dianfei.cli.context import database

    echo_request(service.show(database(), request_id), json_out)


@approvals_app.command("request")
@handle_errors
def approvals_request(
    kind: str,
    reason: Annotated[str, typer.Option(help="why (recorded)")],
    payload: Annotated[str | None, typer.Option(
        help='the kind\'s parameters as JSON, e.g. \'{"bill_id": "B1"}\'')] = None,
    file: Annotated[Path | None, typer.Option(
        help="tariff_change: the full tariff file (its name is the tariff id)")] = None,
    as_user: Annotated[str | None, typer.Option("--as", help=AS_HELP)] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Ask for a change a second person decides; prints the request's number.

    Payloads: waiver {"bill_id"}; write_off {"reference"} (a bill id or a late fee's LF:…);
    bill_correction {"bill_id", "rebill": true|false}; tariff_change --file TARIFF.toml;
    account_closure {"account_id"} (supply off six months: `dianfei account closures` lists
    them)."""
    if file is not None:
        if kind != "tariff_change" or payload is not None:
            raise ValidationError("--file is for a tariff_change, instead of --payload")
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationError(f"--file {file}: cannot read it as UTF-8 text: {exc}") from None
        body: Any = {"tariff_id": file.stem, "toml": text}
    else:
        try:
            body = json.loads(payload or "")
        except json.JSONDecodeError as exc:
            raise ValidationError(f"--payload: not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ValidationError("--payload: a JSON object")
    echo_request(ask(kind, body, reason, as_user, None), json_out)


@approvals_app.command("approve")
@handle_errors
def approvals_approve(
    request_id: int,
    as_user: Annotated[str | None, typer.Option("--as", help=AS_HELP)] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approve someone else's request: the change is made at once, in the same transaction."""
    from dianfei.approvals import service
    from dianfei.cli.context import clock_from_env, database

    db, clock = database(), clock_from_env()
    service.housekeeping(db, clock)
    echo_request(service.approve(db, request_id, checker=acting_user(as_user), clock=clock),
                 json_out)


@approvals_app.command("reject")
@handle_errors
def approvals_reject(
    request_id: int,
    reason: Annotated[str, typer.Option(help="why it is refused (recorded)")],
    as_user: Annotated[str | None, typer.Option("--as", help=AS_HELP)] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Refuse someone else's request, with a reason: nothing is changed."""
    from dianfei.approvals import service
    from dianfei.cli.context import clock_from_env, database

    db, clock = database(), clock_from_env()
    service.housekeeping(db, clock)
    checker = acting_user(as_user)
    with db.session() as s:
        service.reject(s, request_id, checker=checker, reason=reason, clock=clock)
    echo_request(service.show(db, request_id), json_out)
