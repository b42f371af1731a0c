"""The channel contract (发送渠道): what dispatch hands an adapter, and what comes back.

An adapter (SMTP e-mail, Alibaba Cloud SMS, letters, WeChat) implements :class:`Sender`:
``send(message)`` returns a :class:`SendResult` when the provider accepted the message, and raises
:class:`SendError` otherwise — ``retryable=True`` when the same message may be tried again later
(a throttle, a 5xx, a refused connection), ``False`` when it never will succeed (an invalid phone
number, a rejected template). ``outcome_unknown=True`` says the provider may or may not have
taken the message (a read timeout): dispatch then does not retry a channel that cannot
de-duplicate, and puts the row on the worklist instead of risking a second SMS.

Dispatch calls adapters from several threads at once (``[notify] dispatch_concurrency``), so an
adapter must be thread-safe. An adapter may also offer ``async def send_async(message)`` with the
same outcomes: dispatch then keeps that channel's messages in flight on its event loop instead of
a thread each (the SMS gateway), and calls its ``close_connections()``, if any, at the end of a pass.

``idempotent`` says a resend of the same outbox row cannot reach the customer twice (letters are
written to a file named by the outbox id); only such channels are retried after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from dianfei.notify.render import Rendered


@dataclass(frozen=True)
class Recipient:
    """Where a notice goes, decrypted just for the send and never stored in the outbox."""

    customer_id: str
    name: str
    phone: str | None = None
    email: str | None = None
    wechat_openid: str | None = None
    address: str | None = None


@dataclass(frozen=True)
class Message:
    outbox_id: int
    key: str
    account_id: str
    attempt: int
    recipient: Recipient
    rendered: Rendered
    #: when dispatch handed it over (the letter's date)
    at: datetime


@dataclass(frozen=True)
class SendResult:
    #: the provider's id for the message: SMS BizId, e-mail Message-ID, letter path
    provider_ref: str | None = None


class SendError(Exception):
    def __init__(self, code: str, message: str, *, retryable: bool,
                 outcome_unknown: bool = False) -> None:
        self.code = code
        self.message = message
        self.retryable = retryable
        self.outcome_unknown = outcome_unknown
        super().__init__(f"{code}: {message}")


class Sender(Protocol):
    #: sms, email, wechat or letter
    channel: str
    #: a second send of the same outbox row cannot reach the customer twice
    idempotent: bool

    def send(self, message: Message) -> SendResult: ...


@dataclass
class Senders:
    """The configured adapters; a channel without one is recorded 'suppressed', never dropped."""

    sms: Sender | None = None
    email: Sender | None = None
    wechat: Sender | None = None
    letter: Sender | None = None

    def get(self, channel: str) -> Sender | None:
        sender: Sender | None = getattr(self, channel, None)
        return sender
