"""E-mail over SMTP (电子邮件): one multipart/alternative message (text + HTML) per notice.

Settings: ``[notify.smtp]`` host, port, user, password, from, starttls, ssl, timeout — or the
environment ``DIANFEI_SMTP_HOST``, ``DIANFEI_SMTP_PORT``, ``DIANFEI_SMTP_USER``,
``DIANFEI_SMTP_PASSWORD``, ``DIANFEI_SMTP_FROM``, ``DIANFEI_SMTP_STARTTLS`` (1/0),
``DIANFEI_SMTP_SSL`` (1/0), which win over the file. No host → the e-mail channel is not
configured and e-mails are recorded 'suppressed'. A user and password are refused without ssl or
starttls (the password would travel in clear) unless the host is loopback or
``allow_plain_login`` (``DIANFEI_SMTP_ALLOW_PLAIN_LOGIN``) says the relay is on a trusted network.

Subjects and names are encoded per RFC 2047 (UTF-8) by the standard library's ``email`` package;
bodies are UTF-8. A 4xx reply or a refused connection is retryable; a 5xx reply (unknown
mailbox, policy rejection) is terminal. SMTP has no idempotency key, so a connection that drops
after DATA was sent is an unknown outcome (see channels.py).
"""

from __future__ import annotations

import os
import re
import secrets
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr
from pathlib import Path
from typing import Any

from dianfei.core.errors import ValidationError
from dianfei.notify.channels import Message, SendError, SendResult


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    user: str | None = None
    password: str | None = None
    sender: str = "noreply@localhost"
    starttls: bool = False
    ssl: bool = False
    timeout: float = 30.0
    #: display name of the sender (the utility)
    sender_name: str | None = None


#: one addr-spec as a notice may be sent to: dot-atom local part, a dotted host name, no display
#: name, no list — ``a@x.cn,b@evil.cn`` or ``a@x.cn\nBcc: b@evil.cn`` must never pass
_MAILBOX = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{}~-]+)*"
                      r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def mailbox_problem(address: str) -> str | None:
    """Why ``address`` is not one deliverable mailbox (RFC 5321 sizes), or None when it is."""
    if len(address) > 254:
        return "longer than 254 characters"
    if not _MAILBOX.fullmatch(address):
        return "not one address of the form name@host.example (no lists, spaces or display names)"
    if len(address.partition("@")[0]) > 64:
        return "the part before @ is longer than 64 characters"
    return None


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def load_smtp_settings(notify_raw: Mapping[str, Any], env: Mapping[str, str] | None = None,
                       sender_name: str | None = None) -> SmtpSettings | None:
    """``[notify.smtp]`` overlaid by ``DIANFEI_SMTP_*``; None when no host is configured."""
    env = os.environ if env is None else env
    cfg = dict(notify_raw.get("smtp", {}) or {})
    for name in ("host", "port", "user", "password", "from", "starttls", "ssl", "timeout",
                 "allow_plain_login"):
        value = env.get(f"DIANFEI_SMTP_{name.upper()}")
        if value:
            cfg[name] = value
    host = cfg.get("host")
    if not host:
        return None
    try:
        port = int(cfg.get("port", 465 if _flag(cfg.get("ssl", False)) else 25))
        timeout = float(cfg.get("timeout", 30))
    except ValueError:
        raise ValidationError("notify.smtp: port and timeout must be numbers") from None
    if _flag(cfg.get("ssl", False)) and _flag(cfg.get("starttls", False)):
        raise ValidationError("notify.smtp: choose ssl (port 465) or starttls (port 587), not both")
    encrypted = _flag(cfg.get("ssl", False)) or _flag(cfg.get("starttls", False))
    if cfg.get("user") and not encrypted and str(host) not in _LOOPBACK \
            and not _flag(cfg.get("allow_plain_login", False)):
        # the password would cross the network in clear (AUTH PLAIN/LOGIN is base64, not secret)
        raise ValidationError("notify.smtp: a user and password need ssl = true or starttls = true "
                              "(or allow_plain_login = true for a relay on a trusted network)")
    return SmtpSettings(host=str(host), port=port, user=cfg.get("user") or None,
                        password=cfg.get("password") or None,
                        sender=str(cfg.get("from") or f"noreply@{host}"),
                        starttls=_flag(cfg.get("starttls", False)), ssl=_flag(cfg.get("ssl", False)),
                        timeout=timeout, sender_name=sender_name)


def build_email(message: Message, settings: SmtpSettings) -> EmailMessage:
    """The MIME message: Subject (RFC 2047), From, To, Message-ID, text and HTML alternatives."""
    r = message.rendered
    if r.subject is None or r.text is None or r.html is None:
        raise SendError("not_rendered", "the e-mail parts were not rendered", retryable=False)
    problem = mailbox_problem(message.recipient.email or "")
    if problem:
        # a stored address from before the check, or edited in the database: never send
        raise SendError("bad_address", f"the e-mail address is {problem}", retryable=False)
    mail = EmailMessage()
    mail["Subject"] = r.subject
    mail["From"] = formataddr((settings.sender_name, settings.sender)) if settings.sender_name \
        else settings.sender
    mail["To"] = formataddr((message.recipient.name, message.recipient.email or ""))
    domain = settings.sender.rpartition("@")[2] or "dianfei.invalid"
    # short enough never to be folded (make_msgid's random part sometimes is)
    mail["Message-ID"] = f"<{message.outbox_id}.{message.attempt}.{secrets.token_hex(6)}@{domain}>"
    # lets a mail log be matched to the outbox row, and a customer's reply to the notice
    mail["X-Dianfei-Outbox"] = str(message.outbox_id)
    mail["X-Dianfei-Notice"] = r.notice
    mail.set_content(r.text, charset="utf-8")
    mail.add_alternative(r.html, subtype="html", charset="utf-8")
    for attachment in r.attachments:
        # the bill's PDF: read at send time, so the customer gets the file as it stands
        path = Path(attachment)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SendError("attachment_missing", f"{path}: {exc}", retryable=False) from None
        subtype = "pdf" if path.suffix.lower() == ".pdf" else "octet-stream"
        mail.add_attachment(data, maintype="application", subtype=subtype, filename=path.name)
    # after the body: set_content() replaces every Content-* header
    mail["Content-Language"] = r.locale
    return mail


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


class SmtpSender:
    channel = "email"
    idempotent = False

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def send(self, message: Message) -> SendResult:
        if not message.recipient.email:
            raise SendError("no_address", "the customer has no e-mail address", retryable=False)
        mail = build_email(message, self.settings)
        s = self.settings
        try:
            client: smtplib.SMTP
            if s.ssl:
                client = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout,
                                          context=ssl.create_default_context())
            else:
                client = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            # nothing was handed over yet: safe to try again
            raise SendError("smtp_connect", f"{s.host}:{s.port}: {exc}", retryable=True) from None
        try:
            with client:
                client.ehlo()
                if s.starttls:
                    client.starttls(context=ssl.create_default_context())
                    client.ehlo()
                if s.user:
                    client.login(s.user, s.password or "")
                refused = client.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise SendError(f"smtp_{code}", _text(text),
                            retryable=400 <= code < 500) from None
        except smtplib.SMTPResponseException as exc:
            raise SendError(f"smtp_{exc.smtp_code}", _text(exc.smtp_error),
                            retryable=400 <= exc.smtp_code < 500) from None
        except (smtplib.SMTPServerDisconnected, TimeoutError) as exc:
            # the server may have queued the message before the line dropped
            raise SendError("smtp_disconnected", str(exc), retryable=True,
                            outcome_unknown=True) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError("smtp_error", str(exc), retryable=True) from None
        if refused:
            code, text = next(iter(refused.values()))
            raise SendError(f"smtp_{code}", _text(text), retryable=False)
        return SendResult(provider_ref=str(mail["Message-ID"]))
