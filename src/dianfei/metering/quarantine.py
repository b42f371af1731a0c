"""The quarantine of one import batch (隔离区), as staff fix it: line, reason, detail and the row.

A rejected row of an import with personal data (customers) is stored masked, with the row itself
sealed (db/pii.py ``QUARANTINE_RAW``): everyone sees 张*, 138****5678; the one who must fix the
row — the CLI's ``--reveal``, or over the API a role with ``pii:read`` — gets the sealed copy
opened with the keyring, and a ``pii.revealed`` record goes on the audit chain (who opened which
batch's rows, not what they read).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from dianfei.core.errors import NotFoundError
from dianfei.db.pii import QUARANTINE_RAW

if TYPE_CHECKING:
    from dianfei.core.crypto import PiiCipher
    from dianfei.db.engine import Database


def quarantined(db: Database, batch_id: str, *, cipher: PiiCipher | None = None,
                limit: int | None = None, offset: int = 0) -> dict[str, Any]:
    """The batch (kind, file, counts, ``quarantined``: its rows here) and its rejected rows in
    line order (``limit``/``offset``: a page of them), each with ``line``,
    ``reason``, ``detail``, ``raw`` (masked where personal) and ``sealed``; with ``cipher`` the
    sealed rows are opened (``raw`` in clear) and the opening is audited."""
    from dianfei.audit import service as audit

    if not (0 < len(batch_id) <= 40 and batch_id.isprintable()):  # ids are 24 printable chars
        raise NotFoundError(f"no import batch {batch_id[:40]!r} (`dianfei import` prints its id)")
    with db.engine.begin() as conn:
        batch = conn.execute(text(
            "SELECT batch_id, kind, origin, file_name, status, data_rows, accepted, rejected, "
            "duplicates FROM import_batches WHERE batch_id = :b"), {"b": batch_id}).mappings().first()
        if batch is None:
            raise NotFoundError(f"no import batch {batch_id!r} (`dianfei import` prints its id)")
        total = conn.execute(text("SELECT count(*) FROM import_quarantine WHERE batch_id = :b"),
                             {"b": batch_id}).scalar_one()
        sql = ("SELECT line, reason, detail, raw, raw_enc FROM import_quarantine "
               "WHERE batch_id = :b ORDER BY line, id")
        params: dict[str, Any] = {"b": batch_id}
        if limit is not None:
            sql += " LIMIT :n OFFSET :o"
            params.update(n=limit, o=offset)
        rows = []
        opened = 0
        for r in conn.execute(text(sql), params).mappings():
            raw = r["raw"]
            if cipher is not None and r["raw_enc"] is not None:
                raw = cipher.decrypt(r["raw_enc"], QUARANTINE_RAW.context(batch_id, r["line"]))
                opened += 1
            rows.append({"line": r["line"], "reason": r["reason"], "detail": r["detail"],
                         "raw": raw, "sealed": r["raw_enc"] is not None})
        if opened:
            audit.record(conn, "pii.revealed", batch_id,
                         {"table": "import_quarantine", "rows": opened})
    return {**dict(batch), "quarantined": int(total), "rows": rows}
