"""Bill delivery (账单投递) through notify, and its audit: which bills reached their customer.

**Delivering** a period queues one ``bill_issued`` notice per live bill and channel in notify's
outbox, keyed ``bill:{period}:{bill_id}:{channel}`` — so delivering again queues nothing new,
and a rebill (a new bill id) is delivered afresh:

- ``email``: the text and HTML notice with the bill's rendered PDF attached (``bill render``
  first: a bill without its file is not e-mailed and is listed as not rendered);
- ``sms``: the amount due, the due date and the bill's link;
- ``letter``: notify's printed letter with the same facts (for customers without e-mail or
  mobile; ``only_undelivered`` sends letters only for bills that reached nobody).

notify's dispatch then sends them (opt-outs, missing contacts, quiet hours and retries are its
business, docs/notify.md) and records every outcome in the outbox.

**The audit** (the seed paper's supervision of bill delivery) reads those outcomes back through
``notify.service.deliveries`` — never notify's tables — and says per period how many bills were
issued, rendered, queued, sent, delivered (a provider's receipt) and failed, per channel and in
total, and lists every bill that never reached its customer with what happened on each channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from dianfei.core.clock import Clock, Period
from dianfei.core.errors import ValidationError
from dianfei.core.money import fmt_yuan
from dianfei.db.engine import Database

CHANNELS = ("email", "sms", "letter")
#: an outbox row in one of these reached the provider (sent) or the customer (delivered)
REACHED = ("sent", "delivered")
PENDING = ("queued", "sending")


def delivery_key(period: str, bill_id: str, channel: str) -> str:
    return f"bill:{period}:{bill_id}:{channel}"


def _prefix(period: Period) -> str:
    return f"bill:{period}:"


@dataclass
class DeliverResult:
    period: str
    channels: tuple[str, ...]
    bills: int
    queued: dict[str, int] = field(default_factory=dict)
    already_queued: dict[str, int] = field(default_factory=dict)
    not_rendered: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"period": self.period, "channels": list(self.channels), "bills": self.bills,
                "queued": self.queued, "already_queued": self.already_queued,
                "not_rendered": self.not_rendered}


def _live_bills(db: Database, period: Period) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(
            "SELECT bill_id, account_id, customer_id, amount, due_on FROM bills "
            "WHERE period = :p AND status <> 'cancelled' ORDER BY account_id"),
            {"p": str(period)}).mappings()]


def deliver_period(db: Database, period: Period, *, clock: Clock,
                   channels: Sequence[str] = ("email", "sms"), lang: str = "zh-CN",
                   only_undelivered: bool = False) -> DeliverResult:
    """Queue the period's bills on ``channels`` (module doc). Does the enqueueing in one
    transaction; ``dianfei notify dispatch`` sends."""
    from dianfei.billing.documents import PAY_CHANNELS, Links
    from dianfei.billing.rendering import rendered_files
    from dianfei.billing.view import normalise_lang, words
    from dianfei.customers.service import bill_facts
    from dianfei.ledger.service import balances
    from dianfei.notify import service as notify

    bad = [c for c in channels if c not in CHANNELS]
    if bad or not channels:
        raise ValidationError(f"--channel must be one of {', '.join(CHANNELS)}, got "
                              f"{', '.join(bad) or 'none'}")
    lang = normalise_lang(lang)
    bills = _live_bills(db, period)
    if not bills:
        raise ValidationError(f"no bills for period {period}: run `dianfei bill run --period "
                              f"{period}` first")
    if only_undelivered:
        audit = delivery_audit(db, period)
        wanted = {b["bill_id"] for b in audit["never_delivered"]}
        bills = [b for b in bills if b["bill_id"] in wanted]
    accounts = [b["account_id"] for b in bills]
    facts = {r["account_id"]: r for r in bill_facts(db.engine, accounts).iter_rows(named=True)}
    with db.engine.connect() as conn:
        owed = balances(conn, accounts)
    files = {bill_id: path for bill_id, (_, path, _) in
             rendered_files(db, period, "pdf", lang).items() if Path(path).exists()}
    links = Links.from_settings(db.settings.raw)
    w = words(lang)
    pay = "、".join(w[f"channel_{c}"] for c, _ in PAY_CHANNELS) if lang == "zh-CN" else \
        ", ".join(w[f"channel_{c}"] for c, _ in PAY_CHANNELS)
    result = DeliverResult(str(period), tuple(channels), len(bills))
    notices = []
    for b in bills:
        fact = facts.get(b["account_id"], {})
        context = {
            "customer_name": str(fact.get("name") or ""), "account_id": b["account_id"],
            "period": str(period), "amount_due": fmt_yuan(max(owed.get(b["account_id"], 0), 0)),
            "due_on": str(b["due_on"])[:10], "bill_link": links.bill_link(b["account_id"],
                                                                          str(period)),
            "bill_id": b["bill_id"], "bill_total": fmt_yuan(int(b["amount"])),
            "pay_channels": pay,
        }
        for channel in channels:
            ctx = dict(context)
            if channel == "email":
                path = files.get(b["bill_id"])
                if path is None:
                    result.not_rendered.append(b["bill_id"])
                    continue
                ctx["attachment"] = path
            notices.append(notify.Notice(
                key=delivery_key(str(period), b["bill_id"], channel), account_id=b["account_id"],
                customer_id=b["customer_id"], notice="bill_issued", channel=channel,
                context=ctx))
    result.not_rendered = sorted(set(result.not_rendered))
    with db.session() as s:
        existing = notify.queued_keys(s.connection(), [n.key for n in notices])
        notify.enqueue_many(s, notices, clock=clock)
    for channel in channels:
        mine = [n for n in notices if n.channel == channel]
        result.already_queued[channel] = sum(1 for n in mine if n.key in existing)
        result.queued[channel] = len(mine) - result.already_queued[channel]
    return result


def delivery_audit(db: Database, period: Period) -> dict[str, Any]:
    """Bills issued and delivered per channel for ``period``, and the bills that never
    reached their customer (module doc). Counts are bills, except under ``channels``, which
    counts outbox rows by status."""
    from dianfei.notify import service as notify

    bills = _live_bills(db, period)
    if not bills:
        raise ValidationError(f"no bills for period {period}")
    live = {b["bill_id"]: b for b in bills}
    with db.engine.connect() as conn:
        rendered = {r[0] for r in conn.execute(text(
            "SELECT bill_id, path FROM bill_renders WHERE period = :p"), {"p": str(period)})
            if Path(r[1]).exists()}
    rows: dict[str, list[Any]] = {}
    per_channel: dict[str, dict[str, int]] = {}
    for d in notify.deliveries(db, key_prefix=_prefix(period)):
        # key = bill:{period}:{bill_id}:{channel}[#letter]
        bill_id = d.key[len(_prefix(period)):].rsplit(":", 1)[0]
        if bill_id not in live:
            continue  # a cancelled bill's notices: its rebill is audited instead
        rows.setdefault(bill_id, []).append(d)
        counts = per_channel.setdefault(d.channel, {})
        counts[d.status] = counts.get(d.status, 0) + 1
    reached = {b for b, ds in rows.items() if any(d.status in REACHED for d in ds)}
    delivered = {b for b, ds in rows.items() if any(d.status == "delivered" for d in ds)}
    pending = {b for b, ds in rows.items() if b not in reached
               and any(d.status in PENDING for d in ds)}
    failed = {b for b, ds in rows.items() if any(d.status == "failed" for d in ds)}
    never = []
    for bill_id, b in live.items():
        if bill_id in reached or bill_id in pending:
            continue
        never.append({
            "account": b["account_id"], "bill_id": bill_id,
            "rendered": bill_id in rendered,
            "channels": [{"channel": d.channel, "status": d.status, "attempts": d.attempts,
                          "last_error": d.last_error} for d in rows.get(bill_id, [])],
            "reason": "never queued" if bill_id not in rows else "every channel ended "
                      "without reaching the customer",
        })
    return {
        "period": str(period),
        "issued": len(live),
        "rendered": len(rendered & set(live)),
        "queued": len(rows),
        "sent": len(reached),
        "delivered": len(delivered),
        "failed": len(failed - reached),
        "pending": len(pending),
        "never_delivered_count": len(never),
        "channels": {c: dict(sorted(v.items())) for c, v in sorted(per_channel.items())},
        "never_delivered": never,
    }
