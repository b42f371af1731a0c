"""Personal data (phone numbers, ID numbers, e-mail addresses, bank accounts) encrypted at rest
and masked on screen — with a key lifecycle.

AES-256-GCM from the ``cryptography`` package with a random 96-bit nonce per value. Tokens:

- ``v2:<key id>:<base64(nonce ‖ ciphertext)>`` — written now. The key id says which key of the
  keyring sealed it, so keys can be rotated (``dianfei keys rotate``) while old tokens still
  open. The associated data is the token's *context* — ``table.column:row key`` (see
  :func:`pii_context`) — so a ciphertext copied onto another customer's row, or into another
  column, does not open;
- ``v1:<base64(…)>`` — written before key ids: opened with the legacy key (id ``k0``) and no
  context; ``dianfei keys reencrypt`` turns them into v2.

The keyring (:func:`load_keyring`), first match wins:

1. ``DIANFEI_SECRET_KEYS`` = ``id:base64,id:base64,…`` with ``DIANFEI_SECRET_KEY_ID`` naming the
   active one (default: the last listed);
2. ``DIANFEI_SECRET_KEY`` = base64 of 32 bytes, the single legacy key ``k0``;
3. files under ``DATA_DIR/keys/`` (``<id>.key``, the active id in ``DATA_DIR/keys/active``) plus
   the legacy ``DATA_DIR/secret.key`` as ``k0``.

A key is created (``DATA_DIR/keys/k1.key``, mode 0600) only when there is none at all AND the
database holds no encrypted value — the caller says so (``may_create``): a second host pointed at
the same database without the key must fail loudly, not encrypt new rows with a key of its own.
Lose the keys and the personal data is gone: back them up apart from the database
(docs/operations.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from dianfei.core.errors import ValidationError

_V1 = "v1:"
_V2 = "v2:"
LEGACY_KEY_ID = "k0"
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def pii_context(table: str, column: str, *row_key: object) -> str:
    """The associated data a token of ``table.column`` for the row ``row_key`` is sealed with."""
    return f"{table}.{column}:" + "|".join(str(k) for k in row_key)


def _decode_key(text: str | bytes, where: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip())
    except (ValueError, TypeError, binascii.Error):
        raise ValidationError(f"{where} is not urlsafe base64 of 32 bytes") from None
    if len(key) != 32:
        raise ValidationError(f"{where} must be 32 bytes (AES-256), got {len(key)}")
    return key


class PiiCipher:
    """Seals with the active key of a keyring; opens with whichever key sealed the token."""

    def __init__(self, key: bytes | Mapping[str, bytes], active: str | None = None) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        keys = {LEGACY_KEY_ID: key} if isinstance(key, bytes) else dict(key)
        if not keys:
            raise ValidationError("the PII keyring is empty")
        for kid, k in keys.items():
            if not _KEY_ID.fullmatch(kid):
                raise ValidationError(f"PII key id {kid!r}: letters, digits, - and _ only (≤ 32)")
            if len(k) != 32:
                raise ValidationError(f"the PII key {kid} must be 32 bytes (AES-256)")
        self.active = active if active is not None else list(keys)[-1]
        if self.active not in keys:
            raise ValidationError(f"the active PII key {self.active!r} is not in the keyring "
                                  f"({', '.join(keys)})")
        self.key_ids = tuple(keys)
        self._aead = {kid: AESGCM(k) for kid, k in keys.items()}
        # keyed-hash look-ups (a customer found by phone): a key of its own per PII key, derived
        # so the AES key itself never serves two purposes
        self._lookup = {kid: hmac.new(k, b"dianfei-lookup-v1", hashlib.sha256).digest()
                        for kid, k in keys.items()}

    @classmethod
    def from_environment(cls, data_dir: Path, *,
                         may_create: bool | Callable[[], bool] = True) -> PiiCipher:
        """The configured keyring (see the module doc). ``may_create`` — or a function asked only
        when no key exists — says whether a first key may be created: pass False (or a check of
        the database) wherever encrypted rows may already exist."""
        keys, active = load_keyring(data_dir, os.environ)
        if keys:
            return cls(keys, active)
        allowed = may_create() if callable(may_create) else may_create
        if not allowed:
            raise ValidationError(
                "personal data in this database is encrypted, but no key is configured here: copy "
                f"the keys from the host that wrote it into {data_dir / 'keys'} (or set "
                "DIANFEI_SECRET_KEYS); a new key would make the stored data unreadable")
        folder = data_dir / "keys"
        folder.mkdir(parents=True, exist_ok=True)
        write_key_file(folder, "k1", os.urandom(32))
        (folder / "active").write_text("k1\n")
        keys, active = load_keyring(data_dir, os.environ)
        return cls(keys, active)

    # -- sealing ------------------------------------------------------------------------------
    def encrypt(self, plaintext: str | None, context: str = "") -> str | None:
        if plaintext is None or plaintext == "":
            return None
        nonce = os.urandom(12)
        sealed = self._aead[self.active].encrypt(nonce, plaintext.encode(), context.encode())
        return f"{_V2}{self.active}:" + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, token: str | None, context: str = "") -> str | None:
        from cryptography.exceptions import InvalidTag

        if token is None:
            return None
        kid, body, aad = self._parts(token, context)
        aead = self._aead.get(kid)
        if aead is None:
            raise ValidationError(f"personal data sealed with key {kid}, which this keyring lacks "
                                  f"({', '.join(self.key_ids)})")
        try:
            raw = base64.urlsafe_b64decode(body)
            return aead.decrypt(raw[:12], raw[12:], aad).decode()
        except (InvalidTag, ValueError, binascii.Error):
            where = f" ({context})" if context else ""
            raise ValidationError(f"personal data{where} does not open with key {kid}: a wrong key, "
                                  "or a value moved from another row or column") from None

    # -- keyed look-up hashes ------------------------------------------------------------------
    def lookup_hash(self, value: str, kid: str | None = None) -> str:
        """``<key id>:<hex HMAC-SHA256>`` of ``value`` under the active key (or ``kid``): equal
        values hash equal, so an encrypted column can be searched without decrypting every row;
        without the key the hash says nothing (a phone number cannot be guessed from it)."""
        key = self._lookup[kid or self.active]
        return f"{kid or self.active}:" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()

    def lookup_hashes(self, value: str) -> list[str]:
        """The look-up hash of ``value`` under every key of the keyring (rows indexed before a
        key rotation still match until ``dianfei portal index-phones`` re-indexes them)."""
        return [self.lookup_hash(value, kid) for kid in self.key_ids]

    @staticmethod
    def key_id_of(token: str) -> str:
        if token.startswith(_V1):
            return LEGACY_KEY_ID
        if token.startswith(_V2):
            return token[len(_V2):].partition(":")[0]
        raise ValidationError("unknown PII token version")

    def _parts(self, token: str, context: str) -> tuple[str, str, bytes | None]:
        if token.startswith(_V2):
            kid, sep, body = token[len(_V2):].partition(":")
            if not sep:
                raise ValidationError("a v2 PII token without a key id")
            return kid, body, context.encode()
        if token.startswith(_V1):  # before key ids and contexts
            return LEGACY_KEY_ID, token[len(_V1):], None
        raise ValidationError("unknown PII token version")


def _secret_bytes(path: Path) -> bytes:
    """A key file's content, refused when others than its owner may read or change it: a key
    another local account can read unseals every phone and ID number."""
    if os.name == "posix" and path.stat().st_mode & 0o077:
        raise ValidationError(f"{path}: a key file must be readable by its owner only (mode "
                              f"{path.stat().st_mode & 0o777:o}); run: chmod 600 {path}")
    return path.read_bytes()


def load_keyring(data_dir: Path, env: Mapping[str, str]) -> tuple[dict[str, bytes], str | None]:
    """(key id → key, active id) from the environment or ``data_dir``; empty when none."""
    listed = env.get("DIANFEI_SECRET_KEYS", "").strip()
    if listed:
        keys: dict[str, bytes] = {}
        for part in listed.split(","):
            kid, sep, value = part.strip().partition(":")
            if not sep:
                raise ValidationError("DIANFEI_SECRET_KEYS is id:base64,id:base64,…")
            keys[kid.strip()] = _decode_key(value, f"DIANFEI_SECRET_KEYS key {kid.strip()}")
        return keys, env.get("DIANFEI_SECRET_KEY_ID") or list(keys)[-1]
    single = env.get("DIANFEI_SECRET_KEY", "").strip()
    if single:
        return {LEGACY_KEY_ID: _decode_key(single, "DIANFEI_SECRET_KEY")}, LEGACY_KEY_ID
    keys = {}
    legacy = data_dir / "secret.key"
    if legacy.exists():
        keys[LEGACY_KEY_ID] = _decode_key(_secret_bytes(legacy), str(legacy))
    folder = data_dir / "keys"
    if folder.is_dir():
        for path in sorted(folder.glob("*.key")):
            keys[path.stem] = _decode_key(_secret_bytes(path), str(path))
    if not keys:
        return {}, None
    marker = folder / "active"
    active = marker.read_text().strip() if marker.exists() else LEGACY_KEY_ID
    return keys, active


def write_key_file(folder: Path, kid: str, key: bytes) -> Path:
    """A new key file (mode 0600, never overwritten)."""
    if not _KEY_ID.fullmatch(kid):
        raise ValidationError(f"PII key id {kid!r}: letters, digits, - and _ only (≤ 32)")
    path = folder / f"{kid}.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(base64.urlsafe_b64encode(key))
    return path


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


def mask_name(name: str | None) -> str | None:
    """张**: the family name and the length, not who it is (a name beside a masked phone or
    address would still point at one person)."""
    if not name:
        return name
    return name[0] + "*" * max(len(name) - 1, 1)


#: the characters of an address kept in clear: province, city and district, not the door
ADDRESS_KEPT = 6


def mask_address(address: str | None) -> str | None:
    """北京市朝阳区****: the first characters (at most half of the address), never the house."""
    if not address:
        return address
    kept = min(ADDRESS_KEPT, len(address) // 2)
    return address[:kept] + "****"


#: a run of 7 or more digits (with the separators a phone or ID number is written with) in free
#: text: a phone, an ID or a bank account number
_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9][0-9 \-]{5,}[0-9Xx](?![0-9])")
_DATE = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}")


def mask_digit_runs(text: str | None) -> str | None:
    """Free text (an error detail, a log line) with every long number masked as a phone is:
    the clear value may have been quoted in it."""
    if not text:
        return text

    def masked(m: re.Match[str]) -> str:
        run = m.group(0)
        if sum(ch.isdigit() for ch in run) < 7 or _DATE.fullmatch(run):
            return run  # a count, a meter id, a date: not personal
        return mask_phone(run) or ""

    return _DIGIT_RUN.sub(masked, text)


def is_masked(value: str | None) -> bool:
    """A value that went through one of the masks above (``**`` in it): never stored as data."""
    return bool(value) and "**" in str(value)


_EMAIL = re.compile(r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})")


def mask_free_text(text: str | None) -> str | None:
    """A message from outside (an SMS gateway's or a mail server's error) before it is stored or
    logged: e-mail addresses as z***@example.cn and long numbers as phones are (the provider may
    quote the recipient: "550 <zhang.san@…>: recipient rejected", "13812345678 is invalid")."""
    if not text:
        return text
    return mask_digit_runs(_EMAIL.sub(r"\1***@\2", text))
