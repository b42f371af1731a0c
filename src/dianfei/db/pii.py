"""Where personal data is stored encrypted, and the work on all of it: the key check at start,
re-encryption after a key rotation, and which keys the stored tokens use.

Every encrypted column is listed here with the columns that identify its row: the token's
context (``core.crypto.pii_context``) is built from them, so a token only opens on its own row.
A package that adds an encrypted column adds its line here (a test checks every ``*_enc``
column of the metadata is listed).

Rejected import rows of a file with personal data (customers) are sealed too: the quarantine
keeps a masked copy of the row in clear (``raw``) and the row itself in ``raw_enc``; so are the
statement, bank result and agent files as received (``statement_files.body_enc``) and the
payment channels' notifications (``payment_inbox.body_enc``: they name the payer). Rows stored
in clear before that (migrations 0031, 0033) are sealed by :func:`reencrypt`, which ``dianfei
keys reencrypt`` and ``keys rotate`` run — a migration must not need the keys.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    #: the columns an update of one row goes by, when not ``row_key`` (a quarantined row's
    #: context is its batch and line, known before the insert; its id is what is unique)
    pk: tuple[str, ...] = ()

    def context(self, *values: object) -> str:
        return pii_context(self.table, self.column, *values)


CUSTOMER_PHONE = PiiColumn("customers", "phone_enc", ("customer_id",))
CUSTOMER_ID_NUMBER = PiiColumn("customers", "id_number_enc", ("customer_id",))
CONTACT_EMAIL = PiiColumn("notify_contacts", "email_enc", ("customer_id",))
MANDATE_BANK_ACCOUNT = PiiColumn("withholding_mandates", "bank_account_enc",
                                 ("account_id", "bank", "active_from"))
QUARANTINE_RAW = PiiColumn("import_quarantine", "raw_enc", ("batch_id", "line"), pk=("id",))
#: the base64 of a received statement / bank result / agent file
STATEMENT_BODY = PiiColumn("statement_files", "body_enc", ("kind", "channel", "sha256"),
                           pk=("id",))
#: the base64 of a payment channel's notification as received (it names the payer)
INBOX_BODY = PiiColumn("payment_inbox", "body_enc", ("channel", "body_sha256"), pk=("id",))
PII_COLUMNS = (CUSTOMER_PHONE, CUSTOMER_ID_NUMBER, CONTACT_EMAIL, MANDATE_BANK_ACCOUNT,
               QUARANTINE_RAW, STATEMENT_BODY, INBOX_BODY)
#: the import kinds whose rows carry personal data: their rejected rows are sealed
PERSONAL_IMPORT_KINDS = ("customers",)


def encrypted_rows_exist(bind: Engine | Connection) -> bool:
    """True when any encrypted value is stored (then no new key may be created silently)."""
    from sqlalchemy import inspect

    with (bind.connect() if isinstance(bind, Engine) else nullcontext(bind)) as conn:
        seen = inspect(conn)
        tables = set(seen.get_table_names())
        for c in PII_COLUMNS:
            # a column a later migration adds is not there yet on a database being upgraded
            if c.table not in tables or c.column not in {
                    col["name"] for col in seen.get_columns(c.table)}:
                continue
            if conn.execute(text(
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
    what is done is under the active key). Quarantined rows of personal imports still in clear
    (stored before migration 0031) are sealed first. Returns the values (re-)encrypted."""
    done = seal_clear_quarantine(engine, cipher, batch=batch, progress=progress)
    done += seal_clear_statement_files(engine, cipher, progress=progress)
    done += seal_clear_inbox(engine, cipher, batch=batch, progress=progress)
    active_prefix = f"v2:{cipher.active}:"
    for c in PII_COLUMNS:
        pk = c.pk or c.row_key
        extra = [k for k in pk if k not in c.row_key]
        keys = ", ".join((*c.row_key, *extra))
        order = ", ".join(pk)
        where = " AND ".join(f"{k} = :{k}" for k in pk)
        while True:
            with engine.begin() as conn:
                rows = conn.execute(text(
                    f"SELECT {keys}, {c.column} FROM {c.table} WHERE {c.column} IS NOT NULL "
                    f"AND {c.column} NOT LIKE :p ORDER BY {order} LIMIT :n"),
                    {"p": active_prefix + "%", "n": batch}).all()
                if not rows:
                    break
                updates = []
                for r in rows:
                    named = dict(zip((*c.row_key, *extra), r[:-1], strict=True))
                    context = c.context(*(named[k] for k in c.row_key))
                    plain = cipher.decrypt(r[-1], context)
                    updates.append({**{k: named[k] for k in pk},
                                    "v": cipher.encrypt(plain, context)})
                conn.execute(text(f"UPDATE {c.table} SET {c.column} = :v WHERE {where}"), updates)
            done += len(rows)
            if progress is not None:
                progress(done)
    return done


def seal_clear_quarantine(engine: Engine, cipher: PiiCipher, *, batch: int = 5_000,
                          progress: Callable[[int], None] | None = None) -> int:
    """Quarantined rows of personal imports kept in clear (before migration 0031): the raw row
    sealed into ``raw_enc``, the clear ``raw`` emptied (which field was which is not known for
    them, so nothing of it can be kept masked) and long numbers in the detail masked. Nothing is
    lost: ``dianfei quarantine BATCH --reveal`` opens the row. Returns the rows sealed."""
    from dianfei.core.crypto import mask_digit_runs

    kinds = ", ".join(f"'{k}'" for k in PERSONAL_IMPORT_KINDS)
    c = QUARANTINE_RAW
    done = 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(text(
                "SELECT q.id, q.batch_id, q.line, q.detail, q.raw FROM import_quarantine q "
                "JOIN import_batches b ON b.batch_id = q.batch_id "
                f"WHERE b.kind IN ({kinds}) AND q.raw_enc IS NULL AND q.raw <> '' "
                "ORDER BY q.id LIMIT :n"), {"n": batch}).all()
            if not rows:
                return done
            conn.execute(text(
                "UPDATE import_quarantine SET raw_enc = :v, raw = '', detail = :d WHERE id = :id"),
                [{"id": r.id, "d": mask_digit_runs(r.detail) or "",
                  "v": cipher.encrypt(r.raw, c.context(r.batch_id, r.line))} for r in rows])
        done += len(rows)
        if progress is not None:
            progress(done)


def seal_body(cipher: PiiCipher, body: bytes, kind: str, channel: str, sha256: str) -> str | None:
    """A received file's bytes as a token of ``statement_files.body_enc`` (None when empty)."""
    import base64

    return cipher.encrypt(base64.b64encode(body).decode("ascii"),
                          STATEMENT_BODY.context(kind, channel, sha256))


def open_body(cipher: PiiCipher, token: str | None, kind: str, channel: str, sha256: str) -> bytes:
    """The bytes of a received file from its sealed ``body_enc``."""
    import base64

    plain = cipher.decrypt(token, STATEMENT_BODY.context(kind, channel, sha256))
    return base64.b64decode(plain) if plain else b""


def seal_clear_statement_files(engine: Engine, cipher: PiiCipher, *,
                               progress: Callable[[int], None] | None = None) -> int:
    """Received files kept in clear (before migration 0031) sealed into ``body_enc``, one file
    per transaction (files may be large), ``body`` emptied. Returns the files sealed."""
    done = 0
    while True:
        with engine.begin() as conn:
            row = conn.execute(text(
                "SELECT id, kind, channel, sha256, body FROM statement_files "
                "WHERE body_enc IS NULL AND size > 0 ORDER BY id LIMIT 1")).first()
            if row is None:
                return done
            conn.execute(text("UPDATE statement_files SET body_enc = :v, body = :e WHERE id = :id"),
                         {"id": row.id, "e": b"",
                          "v": seal_body(cipher, bytes(row.body), row.kind, row.channel, row.sha256)})
        done += 1
        if progress is not None:
            progress(done)


def seal_inbox_body(cipher: PiiCipher, channel: str, body: bytes) -> dict[str, Any]:
    """The stored columns of a notification's body: ``body`` empty, ``body_sha256`` its digest,
    ``body_enc`` the bytes sealed and bound to channel and digest (None when empty)."""
    import base64
    import hashlib

    digest = hashlib.sha256(body).hexdigest()
    token = cipher.encrypt(base64.b64encode(body).decode("ascii"), INBOX_BODY.context(channel, digest))
    return {"body": b"", "body_sha256": digest, "body_enc": token}


def open_inbox_body(cipher: PiiCipher, token: str | None, channel: str, sha256: str) -> bytes:
    """A stored notification's bytes from its sealed ``body_enc``."""
    import base64

    plain = cipher.decrypt(token, INBOX_BODY.context(channel, sha256))
    return base64.b64decode(plain) if plain else b""


def seal_clear_inbox(engine: Engine, cipher: PiiCipher, *, batch: int = 5_000,
                     progress: Callable[[int], None] | None = None) -> int:
    """Notifications stored in clear (before migration 0033) sealed into ``body_enc``, ``body``
    emptied, a batch per transaction. Returns the rows sealed."""
    done = 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(text(
                "SELECT id, channel, body FROM payment_inbox WHERE body_enc IS NULL "
                "AND body_sha256 IS NULL ORDER BY id LIMIT :n"), {"n": batch}).all()
            if not rows:
                return done
            conn.execute(text("UPDATE payment_inbox SET body = :body, body_sha256 = :body_sha256, "
                              "body_enc = :body_enc WHERE id = :id"),
                         [{"id": r.id, **seal_inbox_body(cipher, r.channel, bytes(r.body))}
                          for r in rows])
        done += len(rows)
        if progress is not None:
            progress(done)
