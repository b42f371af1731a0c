"""Rendering a whole bill run (账单批量生成): every live bill of a period to PDF (or HTML).

- **Chunks**: accounts go in chunks (default 1,000); a chunk's documents are built with one
  query per table (documents.bill_documents) and share the period's peer groups.
- **Idempotent**: each file is recorded in ``bill_renders`` with the SHA-256 of the content
  it was drawn from (the document without the day it was read, the language, the format and
  the renderer's version). Rendering again skips a bill whose hash is unchanged and whose file
  is still there; a bill whose content changed (a payment since, a rebill) is drawn again.
- **Parallel**: ``workers`` processes (0: one per usable core, as ``dianfei bill render``
  does by default; never more than there are chunks; spawned: each opens its own database
  connection and builds its own working font, pdf.py) take chunks; the parent records the
  results, one transaction per chunk, and moves the progress bar.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from dianfei.core.clock import BUSINESS_TZ, Period
from dianfei.core.errors import ValidationError
from dianfei.core.settings import Settings
from dianfei.db.engine import Database

#: bump when the layout or the words change, so every bill is drawn again
RENDERER_VERSION = "1"
FORMATS = ("pdf", "html")


def content_hash(doc: dict[str, Any], fmt: str, lang: str) -> str:
    """What the file says, as a hash: the document without the day its position was read."""
    body = dict(doc)
    body["account_position"] = {k: v for k, v in doc["account_position"].items() if k != "as_of"}
    blob = json.dumps(body, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(f"{RENDERER_VERSION}|{fmt}|{lang}|{blob}".encode()).hexdigest()


def bill_file(out_dir: Path, period: str, bill_id: str, lang: str, fmt: str) -> Path:
    return out_dir / period / f"{bill_id}.{lang}.{fmt}"


@dataclass(frozen=True)
class ChunkJob:
    settings: Settings
    period: str
    accounts: tuple[str, ...]
    fmt: str
    lang: str
    out_dir: str
    #: bill_id → (content hash, path) of what is on disk already
    known: dict[str, tuple[str, str]]
    as_of: date
    forecaster: str | None
    #: "module:function" of the payment-plan instalment hook (documents.load_instalments)
    instalments: str | None = None


@dataclass
class ChunkResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class RenderResult:
    period: str
    format: str
    lang: str
    out_dir: str
    bills: int
    rendered: int
    skipped: int
    failed: list[tuple[str, str]]
    workers: int
    seconds: float
    timings: dict[str, float]

    def as_json(self) -> dict[str, Any]:
        return {"period": self.period, "format": self.format, "lang": self.lang,
                "out_dir": self.out_dir, "bills": self.bills, "rendered": self.rendered,
                "skipped": self.skipped,
                "failed": [{"bill_id": b, "error": e} for b, e in self.failed],
                "workers": self.workers, "seconds": round(self.seconds, 3),
                "timings": {k: round(v, 3) for k, v in self.timings.items()}}


# one database and period context per worker process (built on its first chunk)
_WORKER: dict[str, Any] = {}


def _worker_state(job: ChunkJob) -> tuple[Database, Any, Any]:
    from dianfei.billing.documents import document_context, load_forecaster, load_instalments
    from dianfei.db.engine import open_database

    key = f"{job.settings.database_url}|{job.period}"
    if _WORKER.get("key") != key:
        db = open_database(job.settings, migrate_schema=False)
        _WORKER.update(key=key, db=db, ctx=document_context(db, Period.parse(job.period)),
                       forecast=load_forecaster(job.forecaster) if job.forecaster else None,
                       instalments=load_instalments(job.instalments) if job.instalments else None)
    return _WORKER["db"], _WORKER["ctx"], _WORKER["forecast"]


def render_chunk(job: ChunkJob) -> ChunkResult:
    """Build, hash and draw one chunk of documents (runs in a worker process or inline)."""
    from dianfei.billing.documents import bill_documents
    from dianfei.billing.pdf import font_cache
    from dianfei.billing.render import render_html
    from dianfei.billing.view import bill_view

    out = ChunkResult(seconds={"documents": 0.0, "font": 0.0, "draw": 0.0, "write": 0.0})
    t0 = time.perf_counter()
    db, ctx, forecast = _worker_state(job)
    docs = bill_documents(db.engine, Period.parse(job.period), job.accounts, as_of=job.as_of,
                          forecast=forecast, context=ctx, instalments=_WORKER.get("instalments"))
    todo = []
    for doc in docs:
        digest = content_hash(doc, job.fmt, job.lang)
        known = job.known.get(doc["bill_id"])
        if known and known[0] == digest and Path(known[1]).exists():
            out.skipped += 1
            continue
        todo.append((doc, digest, bill_view(doc, job.lang)))
    t1 = time.perf_counter()
    out.seconds["documents"] += t1 - t0
    if job.fmt == "pdf" and todo:
        # one working font for the chunk's characters (pdf.py: why)
        font_cache().prepare(v for _, _, v in todo)
    out.seconds["font"] += time.perf_counter() - t1
    out_dir = Path(job.out_dir)
    for doc, digest, view in todo:
        t2 = time.perf_counter()
        try:
            if job.fmt == "pdf":
                from dianfei.billing.pdf import render_pdf

                data = render_pdf(view)
            else:
                data = render_html(doc, job.lang).encode("utf-8")
        except (ValidationError, ValueError, OSError) as exc:
            out.failed.append((doc["bill_id"], str(exc)))
            continue
        t3 = time.perf_counter()
        path = bill_file(out_dir, job.period, doc["bill_id"], job.lang, job.fmt)
        _write(path, data)
        out.seconds["draw"] += t3 - t2
        out.seconds["write"] += time.perf_counter() - t3
        out.rows.append({"bill_id": doc["bill_id"], "format": job.fmt, "lang": job.lang,
                         "account_id": doc["account"], "period": job.period,
                         "content_hash": digest, "path": str(path), "size": len(data)})
    return out


def _write(path: Path, data: bytes) -> None:
    """Via a temporary file and a rename: a print run or a mail never picks up half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_bytes(data)
    tmp.replace(path)


def _chunks(items: Sequence[str], size: int) -> Iterator[tuple[str, ...]]:
    for i in range(0, len(items), size):
        yield tuple(items[i:i + size])


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's limit)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def render_period(db: Database, period: Period, *, fmt: str = "pdf", lang: str = "zh-CN",
                  out_dir: Path | None = None, workers: int = 1, chunk_size: int = 1000,
                  as_of: date | None = None, forecaster: str | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  instalments: str | None = None) -> RenderResult:
    """Render every live bill of ``period`` (see the module doc). ``forecaster``: the
    "module:function" of a next-bill forecaster (documents.load_forecaster), or None;
    ``instalments``: that of the payment-plan instalment hook (documents.load_instalments)."""
    from dianfei.billing import repository
    from dianfei.billing.view import normalise_lang

    if fmt not in FORMATS:
        raise ValidationError(f"--format must be pdf or html, got {fmt!r}")
    if workers < 0 or chunk_size < 1:
        raise ValidationError("--workers must be 0 (one per core) or more, --chunk-size at "
                              "least 1")
    if workers == 0:
        workers = usable_cores()
    lang = normalise_lang(lang)
    started = time.perf_counter()
    accounts = sorted(repository.period_kwh(db.engine, period)["account_id"].to_list())
    if not accounts:
        raise ValidationError(f"no bills for period {period}: run `dianfei bill run --period "
                              f"{period}` first")
    out = (out_dir or db.settings.data_dir / "bills").resolve()
    known = rendered_files(db, period, fmt, lang)
    by_account: dict[str, dict[str, tuple[str, str]]] = {}
    for bill_id, (digest, path, account) in known.items():
        by_account.setdefault(account, {})[bill_id] = (digest, path)
    day = as_of or datetime.now(BUSINESS_TZ).date()
    # each chunk carries what is on disk for its own accounts' bills
    jobs = [ChunkJob(db.settings, str(period), part, fmt, lang, str(out),
                     {b: v for a in part for b, v in by_account.get(a, {}).items()}, day,
                     forecaster, instalments)
            for part in _chunks(accounts, chunk_size)]
    # no more processes than chunks: a process costs ~1 s to start (imports, its working font)
    workers = min(workers, len(jobs))
    totals = ChunkResult(seconds={"documents": 0.0, "font": 0.0, "draw": 0.0, "write": 0.0})
    done = 0

    def record(res: ChunkResult, n: int) -> None:
        nonlocal done
        _record(db, res.rows)
        totals.rows.extend(res.rows)
        totals.skipped += res.skipped
        totals.failed.extend(res.failed)
        for k, v in res.seconds.items():
            totals.seconds[k] = totals.seconds.get(k, 0.0) + v
        done += n
        if progress:
            progress(done, len(accounts))

    if workers == 1:
        for job in jobs:
            record(render_chunk(job), len(job.accounts))
    else:
        import multiprocessing

        with ProcessPoolExecutor(max_workers=workers,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures: list[tuple[Future[ChunkResult], int]] = [
                (pool.submit(render_chunk, job), len(job.accounts)) for job in jobs]
            for fut, n in futures:
                record(fut.result(), n)
    return RenderResult(period=str(period), format=fmt, lang=lang, out_dir=str(out),
                        bills=len(accounts), rendered=len(totals.rows), skipped=totals.skipped,
                        failed=totals.failed, workers=workers,
                        seconds=time.perf_counter() - started, timings=totals.seconds)


def rendered_files(db: Database, period: Period, fmt: str,
                   lang: str) -> dict[str, tuple[str, str, str]]:
    """bill_id → (content hash, path, account) of the period's files in ``fmt`` and ``lang``."""
    with db.engine.connect() as conn:
        return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(text(
            "SELECT bill_id, content_hash, path, account_id FROM bill_renders WHERE period = :p "
            "AND format = :f AND lang = :l"), {"p": str(period), "f": fmt, "l": lang})}


def _record(db: Database, rows: list[dict[str, Any]]) -> None:
    """Upsert the chunk's files (one transaction): the newest drawing of each bill wins."""
    if not rows:
        return
    from dianfei.billing.models import BillRender

    now = datetime.now(UTC)
    values = [{**r, "rendered_at": now} for r in rows]
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt = pg_insert(BillRender)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(BillRender)  # type: ignore[assignment]
        stmt = stmt.on_conflict_do_update(
            index_elements=["bill_id", "format", "lang"],
            set_={c: stmt.excluded[c] for c in ("content_hash", "path", "size", "rendered_at",
                                                "account_id", "period")})
        conn.execute(stmt, values)
