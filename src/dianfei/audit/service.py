"""The audit chain's entry points (other packages use only these).

- :func:`record` appends one record of a change in the caller's transaction: supply state, a
  waiver, a customer import, a user … (one record per change);
- :func:`ledger_batch` and :func:`record_ledger_batch` / :func:`record_ledger_frame` are what the
  posting core calls for every ledger write: a fresh batch number for the rows, then (after the
  rows) one record carrying their digest;
- :func:`verify` is ``dianfei audit verify``; :func:`acting_as` attributes records to a person.

Why a package of its own, this low: every layer that changes money or supply state (ledger,
billing, payments, collections, customers) must write the record in its own transaction, and the
dependency order lets a package call only those below it; ``security`` sits near the top, so the
chain writer lives here, right after ``db`` and ``events`` (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from dianfei.audit.actor import acting_as as acting_as
from dianfei.audit.actor import current_actor as current_actor
from dianfei.audit.chain import append, append_many
from dianfei.audit.chain import body_of as body_of
from dianfei.audit.chain import record_hash as record_hash
from dianfei.audit.config import ConfigChange as ConfigChange
from dianfei.audit.config import record_if_changed, snapshot
from dianfei.audit.ledger_digest import digest_frame, digest_rows, new_batch
from dianfei.audit.verify import Finding as Finding
from dianfei.audit.verify import Report as Report
from dianfei.audit.verify import verify as verify

if TYPE_CHECKING:
    import polars as pl

    from dianfei.core.settings import Settings


def record(conn: Connection, action: str, subject: str = "",
           detail: Mapping[str, Any] | None = None) -> None:
    """Append a record of one change (``action`` e.g. ``supply.suspended``, ``subject`` the
    account, user …) in the caller's transaction."""
    append(conn, action, subject, detail)


def record_many(conn: Connection, records: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
    """:func:`record` for many changes made in one transaction (action, subject, detail each),
    in order: the same records, written together."""
    append_many(conn, records)


def _summary(kinds: Sequence[str], amounts: Sequence[int], accounts: set[str]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for k in kinds:
        counts[k] = counts.get(k, 0) + 1
    return {"kinds": counts, "amount_fen": int(sum(amounts)), "accounts": len(accounts)}


def ledger_batch() -> int:
    """A fresh batch number for the ledger rows of one write (``ledger_entries.audit_batch``)."""
    return new_batch()


def record_ledger_batch(conn: Connection, batch: int, rows: Sequence[Mapping[str, Any]], *,
                        action: str = "ledger.posting") -> None:
    """Record planned ledger rows (the posting core's dicts) written with ``batch``: one record
    carrying their digest. Called AFTER the rows and their open items are written, so the chain's
    head row is always the last lock a posting takes (a fixed lock order: no deadlock between
    a posting that locked an account's items and one that holds the head)."""
    accounts = {str(r["account_id"]) for r in rows}
    detail = {"ledger_rows": len(rows), "ledger_digest": digest_rows(rows),
              **_summary([r["kind"] for r in rows], [int(r["amount"]) for r in rows], accounts)}
    append(conn, action, next(iter(accounts)) if len(accounts) == 1 else "", detail,
           ledger_batch=batch)


def record_ledger_frame(conn: Connection, batch: int, frame: pl.DataFrame, *, action: str,
                        subject: str = "") -> None:
    """:func:`record_ledger_batch` for rows as columns (bulk debits: a bill run chunk, late
    fees)."""
    import polars as pl

    counts = frame.group_by("kind").agg(pl.len()).sort("kind")
    detail = {"ledger_rows": frame.height, "ledger_digest": digest_frame(frame),
              "kinds": dict(counts.iter_rows()), "amount_fen": int(frame["amount"].sum()),
              "accounts": frame["account_id"].n_unique()}
    append(conn, action, subject, detail, ledger_batch=batch)


#: the batch of ledger rows written before the chain existed (their ``audit_batch`` is NULL)
ADOPTED = 0


def adopt_ledger(conn: Connection) -> int:
    """Record the ledger rows that carry no batch (written before the chain existed) as batch
    :data:`ADOPTED`, once; returns how many rows it covered (0: nothing to adopt)."""
    import polars as pl
    from sqlalchemy import text

    from dianfei.db.frames import read_frame

    frame = read_frame(
        conn, "SELECT kind, reference, account_id, customer_id, amount, posted_at, "
        "business_date, due_on, reverses_entry_id, reason FROM ledger_entries "
        "WHERE audit_batch IS NULL", dates=("business_date", "due_on"), instants=("posted_at",),
        schema={"amount": pl.Int64, "reverses_entry_id": pl.Int64, "reason": pl.String})
    if frame.height == 0 or conn.execute(text(
            "SELECT 1 FROM audit_records WHERE ledger_batch = 0")).first() is not None:
        return 0
    detail = {"ledger_rows": frame.height, "ledger_digest": digest_frame(frame),
              "amount_fen": int(frame["amount"].sum())}
    append(conn, "ledger.adopted", "", detail, ledger_batch=ADOPTED)
    return frame.height


def record_rows(conn: Connection, action: str, frame: pl.DataFrame, *, key: str,
                subject: str = "") -> None:
    """One record for a batch of rows written at once (a customer import, new meters): how many,
    the first and last ``key``, and the sha256 of the rows as written (columns in order, each
    row's values as text), so the record says exactly what was imported."""
    import hashlib

    import polars as pl

    if frame.height == 0:
        return
    lines = frame.select(pl.concat_str([pl.col(c).cast(pl.String).fill_null("\x00")
                                        for c in frame.columns], separator="\x1f").alias("l"))
    text_ = "\x1e".join(lines["l"].to_list())
    keys = frame[key].cast(pl.String)
    append(conn, action, subject, {
        "rows": frame.height, "first": keys.min(), "last": keys.max(),
        "columns": list(frame.columns),
        "digest": hashlib.sha256(text_.encode()).hexdigest()})


def record_configuration(engine: Engine, settings_file: str | None,
                         raw: Mapping[str, Any], extra: Sequence[Path] = ()
                         ) -> ConfigChange | None:
    """Snapshot the configuration files and append ``config.changed`` if they differ from the
    last snapshot on the chain (audit/config.py); None when nothing changed."""
    snap = snapshot(settings_file, raw, extra)
    with engine.begin() as conn:
        return record_if_changed(conn, snap)


def record_current_configuration(engine: Engine, settings: Settings,
                                 env: Mapping[str, str] | None = None) -> ConfigChange | None:
    """:func:`record_configuration` for the running process's settings and environment: what
    ``dianfei serve``, the job worker and ``dianfei config record`` call before they act."""
    import os

    from dianfei.audit.config import sources

    settings_file, extra = sources(os.environ if env is None else env,
                                   settings.billing.tariff_dir)
    return record_configuration(engine, settings_file, settings.raw, extra)


def config_history(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``config.changed`` records (``dianfei config history``)."""
    from dianfei.audit.config import history

    return history(engine, limit)
