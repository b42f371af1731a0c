"""What the collections pages share: reading a posted form, parsing its fields into values or
field-level messages, placing a service's refusal next to the field it is about, and who the
signed-in collector is.

A page checks only the form's shape (a date is a date, an amount has at most two decimals);
every business rule — a promise's earliest and latest date, its least amount, a plan's policy,
four-eyes — stays in the service, whose message is shown next to the field it names. A refused
request stores nothing: each form is one service call inside one unit of work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import HTTPException, Request

from dianfei.core.clock import BUSINESS_TZ
from dianfei.core.errors import DianfeiError, ValidationError
from dianfei.core.money import parse_decimal, to_fen
from dianfei.db.engine import Database
from dianfei.security.service import Principal, allows
from dianfei.web.tables import Page

#: the largest form a collections page accepts (bytes): a note or a summary, not a file
MAX_FORM = 32 * 1024
#: the key of a message about the whole form rather than one field
FORM = "_form"

Errors = dict[str, str]


async def posted(request: Request) -> dict[str, str]:
    """The url-encoded form of a POST, each field's first value, trimmed."""
    body = await request.body()
    if len(body) > MAX_FORM:
        raise HTTPException(status_code=413, detail=f"form larger than {MAX_FORM} bytes")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0].strip() for k, v in fields.items() if k != "csrf_token"}


class Fields:
    """Parse a form's fields, collecting a message per bad field instead of stopping at the
    first (the collector sees every mistake at once)."""

    def __init__(self, form: Mapping[str, str], t: Callable[..., str]) -> None:
        self.form = form
        self.t = t
        self.errors: Errors = {}

    def text(self, name: str, *, required: bool = True, max_len: int = 500) -> str | None:
        value = self.form.get(name, "")
        if not value:
            if required:
                self.errors[name] = self.t("field.required")
            return None
        if len(value) > max_len:
            self.errors[name] = f"≤ {max_len}"
            return None
        return value

    def choice(self, name: str, allowed: Iterable[str]) -> str | None:
        value = self.form.get(name, "")
        options = tuple(allowed)
        if value not in options:
            self.errors[name] = self.t("field.required") if not value else \
                f"{value!r}: {', '.join(options)}"
            return None
        return value

    def day(self, name: str) -> date | None:
        value = self.form.get(name, "")
        if not value:
            self.errors[name] = self.t("field.required")
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.errors[name] = f"{self.t('field.bad_date')}: {value!r}"
            return None

    def instant(self, name: str) -> datetime | None:
        """A ``datetime-local`` field, read as Beijing time (the business time zone)."""
        value = self.form.get(name, "")
        if not value:
            self.errors[name] = self.t("field.required")
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.errors[name] = f"{self.t('field.bad_time')}: {value!r}"
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=BUSINESS_TZ)

    def fen(self, name: str, *, required: bool = True) -> int | None:
        """Yuan with at most two decimals → fen (never a float)."""
        value = self.form.get(name, "")
        if not value:
            if required:
                self.errors[name] = self.t("field.required")
            return None
        try:
            return to_fen(parse_decimal(value, self.t(f"field.{name}"), places=2,
                                        allow_negative=False))
        except ValidationError as exc:
            self.errors[name] = str(exc)
            return None

    def whole(self, name: str, *, low: int = 1, high: int = 120) -> int | None:
        value = self.form.get(name, "")
        if not value:
            self.errors[name] = self.t("field.required")
            return None
        if not value.isdigit() or not low <= int(value) <= high:
            self.errors[name] = f"{low}–{high}: {value!r}"
            return None
        return int(value)


def place(exc: DianfeiError, where: Sequence[tuple[str, Sequence[str]]]) -> Errors:
    """A service's refusal next to the field it is about: the first field one of whose words
    the message contains, else the whole form."""
    message = str(exc)
    lowered = message.lower()
    for name, words in where:
        if any(w in lowered for w in words):
            return {name: message}
    return {FORM: message}


def list_fetch(rows: Sequence[Mapping[str, Any]],
               decorate: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None
               ) -> Callable[[int, int], Page]:
    """``fetch`` over a short list a service answered whole (a worklist, a timeline); the
    ``decorate`` step (names, labels) runs on the shown page only."""
    def fetch(offset: int, limit: int) -> Page:
        chunk = [dict(r) for r in rows[offset:offset + limit]]
        return Page(decorate(chunk) if decorate else chunk, len(rows))

    return fetch


def own_collector(db: Database, who: Principal) -> str | None:
    """None for a caller who may read every list; else the caller's collector id ('' when the
    user is not linked to one on the roster: they have no list and no accounts)."""
    from dianfei.collections.worklist import collector_of

    if allows(who.role, "worklists:read"):
        return None
    return collector_of(db, who) or ""


def may_open_account(db: Database, who: Principal, account_id: str) -> bool:
    """A collector opens only the accounts that have been on their own lists; others with the
    page's permission open any account."""
    from dianfei.collections.worklist import ever_listed_for

    mine = own_collector(db, who)
    return mine is None or ever_listed_for(db, mine, account_id)


def need(who: Principal, permission: str) -> None:
    if not allows(who.role, permission):
        raise HTTPException(status_code=403, detail="your role may not do this")


def local_now(now: datetime) -> str:
    """``now`` as a ``datetime-local`` value in Beijing time (a form's default)."""
    return now.astimezone(BUSINESS_TZ).strftime("%Y-%m-%dT%H:%M")
