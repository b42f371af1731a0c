"""What every channel adapter produces: verified payments, or a refusal with a reason.

An adapter only checks and parses (signature, decryption, field rules, configured ids); it never
touches the database. The inbox stores what arrived raw first; posting (unique on channel and
transaction id, one transaction with the ledger) is done by ``payments.service``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

#: channels a payment can come through (收费渠道)
CHANNELS = ("counter", "bank", "alipay", "wechatpay", "online", "agent", "post")


@dataclass(frozen=True)
class ChannelPayment:
    """One payment a channel reports as received, after its proof was verified."""

    #: one of CHANNELS
    channel: str
    #: the channel's own id for the payment (Alipay trade_no, WeChat transaction_id, bank serial);
    #: unique per channel: the same id is the same payment however often it arrives
    transaction_id: str
    #: fen, > 0
    amount: int
    #: when the customer paid, timezone-aware
    paid_at: datetime
    #: our payment order number (out_trade_no) when the channel echoes it
    order_no: str | None = None
    #: the account when the channel names it directly (bank, agent and counter files)
    account_id: str | None = None
    #: channel fields kept for the record (buyer id, bank code, …), never personal data in clear
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Refusal:
    """Why a notification or file line was not accepted. ``code`` is stable for worklists."""

    #: bad_signature, bad_format, unknown_order, amount_mismatch, account_mismatch, wrong_app,
    #: wrong_merchant, not_paid, closed_order, replay, decrypt_failed, …
    code: str
    message: str
    #: the transaction id when it could be read (a refusal never claims it: see inbox rules)
    transaction_id: str | None = None
    #: True when the channel's signature verified and the message was refused on its content
    #: (unknown order, wrong amount, …): the channel really sent it, so it goes to the inbox
    #: worklist. False for everything anyone could have sent (bad signature, garbage, replays):
    #: those go to the capped refusal log and never into the postings' transaction.
    signed: bool = False



@dataclass(frozen=True)
class Verified:
    """A notification whose proof checked out; ``payment`` is None for a non-payment status
    (e.g. WAIT_BUYER_PAY, TRADE_CLOSED), which is acknowledged and recorded but not posted."""

    payment: ChannelPayment | None
    #: the channel's trade status as sent (TRADE_SUCCESS, SUCCESS, …)
    status: str


Outcome = Verified | Refusal


def signed(outcome: Outcome) -> Outcome:
    """``outcome`` of a message whose signature verified: a refusal is marked as signed."""
    if isinstance(outcome, Refusal) and not outcome.signed:
        return replace(outcome, signed=True)
    return outcome

StatementKind = Literal["payment", "refund"]
