"""Personal data (phone numbers, ID numbers) encrypted at rest and masked on screen.

AES-256-GCM from the ``cryptography`` package with a random 96-bit nonce per value. The key comes
from ``DIANFEI_SECRET_KEY`` (urlsafe base64 of 32 bytes) or, failing that, from
``DATA_DIR/secret.key``, created with mode 0600 on first use. Lose the key and the personal data
is gone: back it up with the database (see docs/operations.md).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from dianfei.core.errors import ValidationError

_VERSION = "v1:"


class PiiCipher:
    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(key) != 32:
            raise ValidationError("the PII key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)

    @classmethod
    def from_environment(cls, data_dir: Path) -> PiiCipher:
        env = os.environ.get("DIANFEI_SECRET_KEY")
        if env:
            try:
                return cls(base64.urlsafe_b64decode(env))
            except (ValueError, TypeError):
                raise ValidationError("DIANFEI_SECRET_KEY is not urlsafe base64 of 32 bytes") from None
        path = data_dir / "secret.key"
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(base64.urlsafe_b64encode(os.urandom(32)))
        return cls(base64.urlsafe_b64decode(path.read_bytes().strip()))

    def encrypt(self, plaintext: str | None) -> str | None:
        if plaintext is None or plaintext == "":
            return None
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), None)
        return _VERSION + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, token: str | None) -> str | None:
        if token is None:
            return None
        if not token.startswith(_VERSION):
            raise ValidationError("unknown PII token version")
        raw = base64.urlsafe_b64decode(token[len(_VERSION):])
        return self._aead.decrypt(raw[:12], raw[12:], None).decode()


def mask_phone(phone: str | None) -> str | None:
    """138****5678: enough for a customer to recognise, not enough to call."""
    if not phone:
        return phone
    if len(phone) <= 7:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def mask_id_number(id_number: str | None) -> str | None:
    """110105********1234."""
    if not id_number:
        return id_number
    if len(id_number) <= 10:
        return "*" * len(id_number)
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]
