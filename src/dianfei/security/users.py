"""Users, passwords, API tokens and the sign-in rate limit.

- passwords: argon2id (argon2-cffi's defaults), verified in constant time; a sign-in for a user
  that does not exist still verifies against a dummy hash, so timing does not tell which part of
  the credentials was wrong;
- tokens: 32 random bytes (``secrets``), stored as sha256 hex with an expiry; presenting one is
  one index lookup;
- rate limit: after :data:`MAX_FAILURES_PER_USER` failed sign-ins for one user name (or
  :data:`MAX_FAILURES_PER_SOURCE` from one address) within :data:`FAILURE_WINDOW`, sign-in is
  refused for that name (address) until the window has passed, whatever the password.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dianfei.audit import service as audit
from dianfei.core.errors import ConflictError, DianfeiError, NotFoundError, ValidationError
from dianfei.customers import service as customers
from dianfei.security.models import ApiToken, SignInFailure, User
from dianfei.security.roles import ROLES

if TYPE_CHECKING:
    from argon2 import PasswordHasher

TOKEN_LIFETIME = timedelta(hours=12)
FAILURE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_SOURCE = 30
MIN_PASSWORD = 10
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class SignInRefused(DianfeiError):
    """Wrong user name or password — deliberately not saying which."""

    code = "invalid_credentials"
    http_status = 401


class TooManyAttempts(DianfeiError):
    code = "too_many_attempts"
    http_status = 429
    retryable = True


@dataclass(frozen=True)
class Principal:
    """Who is calling: a signed-in user."""

    user_id: int
    username: str
    role: str
    customer_id: str | None


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher().hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def _password_ok(stored: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_hasher().verify(stored, password))
    except (VerificationError, InvalidHashError):
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(session: Session, *, username: str, role: str, password: str,
             customer_id: str | None = None, now: datetime) -> User:
    """Create a user. A ``customer`` user is tied to one existing customer; staff are not."""
    if not _USERNAME.match(username):
        raise ValidationError(f"user name {username!r}: 1–64 letters, digits or _ . @ -")
    if role not in ROLES:
        raise ValidationError(f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
    if role == "customer":
        if not customer_id:
            raise ValidationError("a customer user needs --customer CUSTOMER_ID")
        if not customers.customers_by_id(session.connection(), [customer_id]):
            raise ValidationError(f"customer {customer_id} does not exist")
    elif customer_id:
        raise ValidationError(f"--customer is only for the customer role, not {role}")
    if len(password) < MIN_PASSWORD:
        raise ValidationError(f"the password needs at least {MIN_PASSWORD} characters")
    user = User(username=username, role=role, customer_id=customer_id,
                password_hash=hash_password(password), active=True, created_at=now)
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError:
        raise ConflictError(f"user {username} already exists") from None
    audit.record(session.connection(), "user.added", username,
                 {"user_id": user.user_id, "role": role, "customer_id": customer_id})
    return user


def set_active(session: Session, username: str, active: bool) -> None:
    """Disable (or enable again) a user; a disabled user's tokens stop working at once."""
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    if user is None:
        raise ValidationError(f"user {username} does not exist")
    user.active = active
    session.flush()
    audit.record(session.connection(), "user.enabled" if active else "user.disabled", username)


def _recent_failures(session: Session, column: Any, value: str, now: datetime) -> int:
    return int(session.execute(select(func.count()).select_from(SignInFailure).where(
        column == value, SignInFailure.at > now - FAILURE_WINDOW)).scalar_one())


def sign_in(session: Session, *, username: str, password: str, source: str,
            now: datetime) -> tuple[str, datetime]:
    """Check the credentials and hand out a new token (and its expiry). Wrong credentials raise
    :class:`SignInRefused` without saying which part was wrong; too many recent failures for the
    name or the address raise :class:`TooManyAttempts` (the failure is recorded either way)."""
    username = username[:64]
    source = source[:64]
    if (_recent_failures(session, SignInFailure.username, username, now) >= MAX_FAILURES_PER_USER
            or _recent_failures(session, SignInFailure.source, source, now)
            >= MAX_FAILURES_PER_SOURCE):
        raise TooManyAttempts("too many failed sign-ins; try again later")
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    ok = _password_ok(user.password_hash if user else _dummy_hash(), password)
    if user is None or not ok or not user.active:
        session.add(SignInFailure(username=username, source=source, at=now))
        session.flush()
        raise SignInRefused("wrong user name or password")
    token = secrets.token_urlsafe(32)
    expires = now + TOKEN_LIFETIME
    session.add(ApiToken(token_hash=token_hash(token), user_id=user.user_id, created_at=now,
                         expires_at=expires))
    session.flush()
    return token, expires


def principal_for(session: Session, token: str | None, now: datetime) -> Principal | None:
    """The user a presented token belongs to, or None (unknown, expired, revoked, disabled)."""
    if not token or len(token) > 200:
        return None
    row = session.execute(
        select(User.user_id, User.username, User.role, User.customer_id)
        .join(ApiToken, ApiToken.user_id == User.user_id)
        .where(ApiToken.token_hash == token_hash(token), ApiToken.expires_at > now,
               ApiToken.revoked_at.is_(None), User.active.is_(True))).first()
    return Principal(int(row[0]), str(row[1]), str(row[2]), row[3]) if row else None


def revoke(session: Session, token: str, now: datetime) -> None:
    session.execute(update(ApiToken).where(ApiToken.token_hash == token_hash(token))
                    .values(revoked_at=now))


def count_users(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(User)).scalar_one())


def list_users(session: Session) -> list[dict[str, object]]:
    return [{"username": u.username, "role": u.role, "customer_id": u.customer_id,
             "active": u.active, "created_at": u.created_at.isoformat()}
            for u in session.scalars(select(User).order_by(User.username))]


def active_user(session: Session, username: str) -> Principal:
    """The enabled user of this name (a command acting for a named user, e.g. ``--as``);
    ``NotFoundError`` naming it when there is none or it is disabled."""
    row = session.execute(select(User.user_id, User.username, User.role, User.customer_id)
                          .where(User.username == username, User.active.is_(True))).first()
    if row is None:
        raise NotFoundError(f"no enabled user {username!r} (dianfei users list)")
    return Principal(int(row[0]), str(row[1]), str(row[2]), row[3])
