"""Where personal data is stored encrypted, and the work on all of it: the key check at start,
re-encryption after a key rotation, and which keys the stored tokens use.

Every encrypted column is listed here with the columns that identify its row: the token's
context (``core.crypto.pii_context``) is built from them, so a token only opens on its own row.
A package that adds an encrypted column adds its line here (a test checks every ``*_enc``
column of the metadata is listed).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text

from dianfei.core.crypto import PiiCipher, pii_context

if TYPE_CHECKING:
    from dianfei.db.engine import Database


@dataclass(frozen=True)
class PiiColumn:
    table: str
    column: str
    #: the columns whose values identify the row (its context)
    row_key: tuple[str, ...]

    def context(self, *values: object) -> str:
        return pii_context(self.table, self.column, *values)


CUSTOMER_PHONE = PiiColumn("customers", "phone_enc", ("customer_id",))
CUSTOMER_ID_NUMBER = PiiColumn("customers", "id_number_enc", ("customer_id",))
CONTACT_EMAIL = PiiColumn("notify_contacts", "email_enc", ("customer_id",))
MANDATE_BANK_ACCOUNT = PiiColumn("withholding_mandates", "bank_account_enc",
                                 ("account_id", "bank", "active_from"))
PII_COLUMNS = (CUSTOMER_PHONE, CUSTOMER_ID_NUMBER, CONTACT_EMAIL, MANDATE_BANK_ACCOUNT)


def encrypted_rows_exist(bind: Engine | Connection) -> bool:
    """True when any encrypted value is stored (then no new key may be created silently)."""
    from sqlalchemy import inspect

    with (bind.connect() if isinstance(bind, Engine) else nullcontext(bind)) as conn:
        tables = set(inspect(conn).get_table_names())
        for c in PII_COLUMNS:
            if c.table in tables and conn.execute(text(
                    f"SELECT 1 FROM {c.table} WHERE {c.column} IS NOT NULL LIMIT 1")).first():
                return True
    return False


def cipher_for(db: Database) -> PiiCipher:
    """The configured keyring; a first key is created only on a database with no encrypted value."""
    return PiiCipher.from_environment(db.settings.data_dir,
                                      may_create=lambda: not encrypted_rows_exist(db.engine))


def key_usage(engine: Engine) -> dict[str, dict[str, int]]:
    """key id → {table.column: tokens sealed with it}."""
    usage: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for c in PII_COLUMNS:
            rows = conn.execute(text(
                f"SELECT {c.column} FROM {c.table} WHERE {c.column} IS NOT NULL")).scalars()
            for token in rows:
                kid = PiiCipher.key_id_of(str(token))
                where = f"{c.table}.{c.column}"
                usage.setdefault(kid, {})[where] = usage.get(kid, {}).get(where, 0) + 1
    return usage


def reencrypt(engine: Engine, cipher: PiiCipher, *, batch: int = 5_000,
              progress: Callable[[int], None] | None = None) -> int:
    """Seal every stored value not yet sealed by the active key (v1 tokens and older keys) with
    the active key and its row context, a batch per transaction (a crash resumes where it was:
    what is done is under the active key). Returns the values re-encrypted."""
    done = 0
    active_prefix = f"v2:{cipher.active}:"
    for c in PII_COLUMNS:
        keys = ", ".join(c.row_key)
        where = " AND ".join(f"{k} = :{k}" for k in c.row_key)
        while True:
            with engine.begin() as conn:
                rows = conn.execute(text(
                    f"SELECT {keys}, {c.column} FROM {c.table} WHERE {c.column} IS NOT NULL "
                    f"AND {c.column} NOT LIKE :p ORDER BY {keys} LIMIT :n"),
                    {"p": active_prefix + "%", "n": batch}).all()
                if not rows:
                    break
                updates = []
                for r in rows:
                    values = tuple(r[: len(c.row_key)])
                    plain = cipher.decrypt(r[-1], c.context(*values))
                    updates.append({**dict(zip(c.row_key, values, strict=True)),
                                    "v": cipher.encrypt(plain, c.context(*values))})
                conn.execute(text(f"UPDATE {c.table} SET {c.column} = :v WHERE {where}"), updates)
            done += len(rows)
            if progress is not None:
                progress(done)
    return done
