"""Signing a customer in with a one-time code sent to their phone (短信验证码登录).

- :func:`request_code` — a fresh code for a phone number: the number is matched against the
  customers' keyed phone hashes (``customers.phone_lookup``); the code is stored only as a keyed
  hash, valid :attr:`OtpPolicy.ttl` (5 minutes), for :attr:`OtpPolicy.max_attempts` tries, once.
  A number that is no customer's (or several customers') gets a challenge too, whose code is
  never sent: the answer, the rows written and the rate limits are the same either way, so the
  portal never tells whether a number is known.
- :func:`verify_code` — the code back: the customer it signs in, or :class:`OtpRefused` (one
  answer for wrong, expired, used and unknown).
- Rate limits (numbers in ``[portal.otp]``): codes sent per phone and per address, and wrong
  codes per phone and per address, within a sliding window → :class:`TooManyAttempts`.
- :func:`portal_user` — the customer's portal user (created on the first sign-in by code, tied
  to that customer, with a random password nobody knows) and :func:`issue_token` its session.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from dianfei.audit import service as audit
from dianfei.core.crypto import PiiCipher
from dianfei.core.errors import DianfeiError, ValidationError
from dianfei.customers import service as customers
from dianfei.security.models import ApiToken, User
from dianfei.security.otp_models import OtpChallenge, OtpFailure
from dianfei.security.users import TOKEN_LIFETIME, TooManyAttempts, add_user, token_hash

log = logging.getLogger("dianfei.portal")

#: a phone number the portal sends codes to: a mainland mobile
_MOBILE_DIGITS = 11


class OtpRefused(DianfeiError):
    """Wrong, expired or already used code — deliberately not saying which."""

    code = "invalid_code"
    http_status = 401


@dataclass(frozen=True)
class OtpPolicy:
    """The numbers of the code sign-in (``[portal.otp]`` in the configuration)."""

    ttl: timedelta = timedelta(minutes=5)
    digits: int = 6
    #: wrong codes one code survives
    max_attempts: int = 5
    #: the sliding window of the rate limits
    window: timedelta = timedelta(minutes=15)
    sends_per_phone: int = 3
    sends_per_source: int = 20
    failures_per_phone: int = 10
    failures_per_source: int = 30

    @classmethod
    def from_settings(cls, raw: Mapping[str, Any]) -> OtpPolicy:
        cfg = dict((raw.get("portal", {}) or {}).get("otp", {}) or {})
        known = {"ttl_seconds", "digits", "max_attempts", "window_seconds", "sends_per_phone",
                 "sends_per_source", "failures_per_phone", "failures_per_source"}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValidationError(f"[portal.otp]: unknown setting(s) {', '.join(unknown)} "
                                  f"(known: {', '.join(sorted(known))})")

        def num(name: str, default: int, low: int, high: int) -> int:
            value = cfg.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValidationError(f"[portal.otp] {name} must be a whole number "
                                      f"{low}..{high}, got {value!r}")
            return value

        d = cls()
        return cls(ttl=timedelta(seconds=num("ttl_seconds", int(d.ttl.total_seconds()), 30, 3600)),
                   digits=num("digits", d.digits, 4, 10),
                   max_attempts=num("max_attempts", d.max_attempts, 1, 100),
                   window=timedelta(seconds=num("window_seconds",
                                                int(d.window.total_seconds()), 60, 86400)),
                   sends_per_phone=num("sends_per_phone", d.sends_per_phone, 1, 1000),
                   sends_per_source=num("sends_per_source", d.sends_per_source, 1, 100000),
                   failures_per_phone=num("failures_per_phone", d.failures_per_phone, 1, 1000),
                   failures_per_source=num("failures_per_source", d.failures_per_source, 1,
                                           100000))


@dataclass(frozen=True)
class Issued:
    """A challenge made: ``code`` is to be sent only when ``customer_id`` is set."""

    challenge_id: int
    phone: str
    code: str
    customer_id: str | None


def mobile_digits(phone: str) -> str:
    """The 11 digits of a mainland mobile number, or a ValidationError naming the field."""
    digits = customers.normalise_phone(phone) or ""
    if len(digits) != _MOBILE_DIGITS or not digits.startswith("1") or digits[1] in "012":
        raise ValidationError("phone: a mainland mobile number has 11 digits starting 13–19",
                              where="phone")
    return digits


def _code_hash(cipher: PiiCipher, salt: str, code: str) -> str:
    return f"{salt}${cipher.lookup_hash(f'otp:{salt}:{code}')}"


def _code_ok(cipher: PiiCipher, stored: str, code: str) -> bool:
    salt, _, _ = stored.partition("$")
    return secrets.compare_digest(stored, _code_hash(cipher, salt, code))


def _count(session: Session, column: Any, value: str, at: Any, since: datetime) -> int:
    return int(session.execute(select(func.count()).where(column == value, at > since))
               .scalar_one())


def request_code(session: Session, *, phone: str, source: str, now: datetime,
                 cipher: PiiCipher, policy: OtpPolicy | None = None) -> Issued:
    """A new code for ``phone`` (earlier unused codes of the phone stop working)."""
    pol = policy or OtpPolicy()
    digits = mobile_digits(phone)
    source = source[:64]
    key = cipher.lookup_hash(digits)
    since = now - pol.window
    if (_count(session, OtpChallenge.phone_key, key, OtpChallenge.created_at, since)
            >= pol.sends_per_phone
            or _count(session, OtpChallenge.source, source, OtpChallenge.created_at, since)
            >= pol.sends_per_source):
        raise TooManyAttempts("too many codes asked for; try again later")
    found = customers.customers_by_phone(session.connection(), cipher, digits)
    if len(found) > 1:
        # a shared (family) phone: which customer would the code open? Sign in with a password
        log.warning("portal code asked for a phone shared by %d customers: none sent", len(found))
    customer_id = found[0] if len(found) == 1 else None
    code = f"{secrets.randbelow(10 ** pol.digits):0{pol.digits}d}"
    session.execute(update(OtpChallenge).where(OtpChallenge.phone_key == key,
                                               OtpChallenge.used_at.is_(None))
                    .values(used_at=now))
    challenge = OtpChallenge(phone_key=key, customer_id=customer_id,
                             code_hash=_code_hash(cipher, secrets.token_hex(8), code),
                             source=source, created_at=now, expires_at=now + pol.ttl,
                             attempts=0)
    session.add(challenge)
    session.flush()
    return Issued(challenge.challenge_id, digits, code, customer_id)


def verify_code(session: Session, *, phone: str, code: str, source: str, now: datetime,
                cipher: PiiCipher, policy: OtpPolicy | None = None) -> str:
    """The customer the code signs in (the code is used up), or :class:`OtpRefused` — the failure
    is recorded either way (commit even when this raises: the caller's session is the record)."""
    pol = policy or OtpPolicy()
    digits = mobile_digits(phone)
    source = source[:64]
    key = cipher.lookup_hash(digits)
    since = now - pol.window
    if (_count(session, OtpFailure.phone_key, key, OtpFailure.at, since) >= pol.failures_per_phone
            or _count(session, OtpFailure.source, source, OtpFailure.at, since)
            >= pol.failures_per_source):
        raise TooManyAttempts("too many wrong codes; try again later")
    code = code.strip()
    challenge = session.execute(
        select(OtpChallenge).where(OtpChallenge.phone_key == key,
                                   OtpChallenge.used_at.is_(None),
                                   OtpChallenge.expires_at > now)
        .order_by(OtpChallenge.challenge_id.desc()).limit(1).with_for_update()).scalar_one_or_none()
    ok = (challenge is not None and challenge.customer_id is not None
          and challenge.attempts < pol.max_attempts and code.isdigit()
          and len(code) == pol.digits and _code_ok(cipher, challenge.code_hash, code))
    if not ok or challenge is None or challenge.customer_id is None:
        if challenge is not None:
            challenge.attempts += 1
            if challenge.attempts >= pol.max_attempts:
                challenge.used_at = now  # burnt: ask for a new code
        session.add(OtpFailure(phone_key=key, source=source, at=now))
        session.flush()
        raise OtpRefused("wrong or expired code")
    challenge.used_at = now
    session.flush()
    return challenge.customer_id


def portal_user(session: Session, customer_id: str, now: datetime) -> User:
    """The customer's portal user: the first active ``customer`` user tied to the customer, or a
    new one (``portal-<customer id>``, a random password: code sign-in only until staff set one)
    when the customer has none. A customer whose users are all disabled is refused."""
    users = list(session.scalars(select(User).where(User.role == "customer",
                                                    User.customer_id == customer_id)
                                 .order_by(User.user_id)))
    active = [u for u in users if u.active]
    if active:
        return active[0]
    if users:
        raise OtpRefused("wrong or expired code")  # disabled by staff: no way in by code either
    return add_user(session, username=f"portal-{customer_id}"[:64], role="customer",
                    password=secrets.token_urlsafe(32), customer_id=customer_id, now=now)


def issue_token(session: Session, user: User, now: datetime) -> tuple[str, datetime]:
    """A session token for ``user`` (as a password sign-in hands out), recorded in the audit
    chain as a sign-in by code."""
    token = secrets.token_urlsafe(32)
    expires = now + TOKEN_LIFETIME
    session.add(ApiToken(token_hash=token_hash(token), user_id=user.user_id, created_at=now,
                         expires_at=expires))
    session.flush()
    audit.record(session.connection(), "portal.signed_in_by_code", user.username,
                 {"user_id": user.user_id, "customer_id": user.customer_id})
    return token, expires
