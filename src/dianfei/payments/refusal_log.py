"""Callbacks under attack (回调防刷): what an unproven notification may cost us, bounded.

The callback URLs need no sign-in — the channel's signature is the proof — so anyone can post to
them. Before this guard every refused message, body included, was a ``payment_inbox`` row written
in the same transaction as genuine payments: a script posting junk filled memory and the
database, delayed the single writer past WeChat Pay's 5-second answer deadline, and one junk
``trade_no`` holding a NUL byte rolled a whole PostgreSQL batch of genuine payments back.

Now, per server process, :class:`CallbackGuard`:

- refuses a body larger than ``max_body`` (64 KiB; real notifications are under 4 KiB) before
  reading it when Content-Length says so, and stops reading at the limit otherwise (413);
- keeps what nobody proved the channel sent — a refusal whose signature did not verify
  (``Refusal.signed`` is False), a body too large, a throttled request — in
  ``payment_refusal_log``, written by its own thread, never in the postings' transaction: per
  source at most ``keep_per_minute`` rows a minute are kept one by one (body hash and size, the
  claimed transaction id filtered to printable ASCII); the rest are counted in one summary row
  per source, channel and reason; rows beyond ``max_rows`` are pruned, oldest first;
- answers 429, before reading the body, to a source that sent more than ``throttle_after``
  unverifiable messages within ``throttle_seconds`` and not one verified message, until it has
  been quiet for ``throttle_seconds`` — a source that delivers genuine notifications (a channel,
  or a proxy in front of it) is never throttled.

Refusals of signed messages (unknown order, wrong amount) are the channel's own messages and stay
on the inbox worklist as before. The source is the client address; behind a reverse proxy list it
in ``trusted_proxies`` so that the address it puts in X-Forwarded-For is used.

Settings (``[payments.callbacks]`` or ``DIANFEI_CALLBACK_*``): max_body, keep_per_minute,
throttle_after, throttle_seconds, max_rows, trusted_proxies (comma-separated).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select

from dianfei.core.clock import Clock
from dianfei.core.errors import ValidationError
from dianfei.core.proxies import client_address
from dianfei.payments.models import RefusalLogRow

if TYPE_CHECKING:
    from dianfei.db.engine import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuardSettings:
    max_body: int = 64 * 1024
    keep_per_minute: int = 20
    throttle_after: int = 200
    throttle_seconds: float = 10.0
    max_rows: int = 100_000
    trusted_proxies: frozenset[str] = frozenset()
    #: rows waiting for the writer; beyond this, refusals are only counted
    max_pending: int = 10_000
    flush_seconds: float = 0.5


def load_guard_settings(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> GuardSettings:
    """``[payments.callbacks]`` overlaid by ``DIANFEI_CALLBACK_*``; a bad value names itself."""
    env = os.environ if env is None else env
    payments = raw.get("payments", {}) or {}
    section = dict(payments.get("callbacks", {}) or {}) if isinstance(payments, Mapping) else {}
    base = GuardSettings()
    values: dict[str, Any] = {}
    for name, kind in (("max_body", int), ("keep_per_minute", int), ("throttle_after", int),
                       ("throttle_seconds", float), ("max_rows", int)):
        value = env.get(f"DIANFEI_CALLBACK_{name.upper()}", section.get(name))
        if value is None or str(value).strip() == "":
            continue
        try:
            parsed = kind(value)
        except ValueError:
            raise ValidationError(f"[payments.callbacks] {name} must be a number, got {value!r}") from None
        if parsed <= 0:
            raise ValidationError(f"[payments.callbacks] {name} must be positive, got {value!r}")
        values[name] = parsed
    proxies = env.get("DIANFEI_CALLBACK_TRUSTED_PROXIES", section.get("trusted_proxies"))
    if proxies:
        items = proxies.split(",") if isinstance(proxies, str) else list(proxies)
        values["trusted_proxies"] = frozenset(str(p).strip() for p in items if str(p).strip())
    return GuardSettings(**{**base.__dict__, **values})


def printable(text: str | None, limit: int) -> str | None:
    """``text`` with everything but printable ASCII and CJK dropped, cut to ``limit``: what an
    unproven sender wrote may be kept, never its control bytes (a NUL aborts a PostgreSQL insert)."""
    if text is None:
        return None
    kept = "".join(ch for ch in text if ch.isprintable() and ch not in "\x7f")
    return kept[:limit] or None


#: the detail of a row that counts refusals instead of keeping each
SUMMARY = "summary of refusals not kept one by one"


@dataclass
class _Source:
    window_start: float
    refused: int = 0
    verified: int = 0
    minute_start: float = 0.0
    kept: int = 0


@dataclass
class _Summary:
    count: int
    first_at: datetime
    last_at: datetime
    body_size: int = 0


@dataclass
class CallbackGuard:
    """The per-process guard of the callback routes (see the module doc)."""

    db: Database
    clock: Clock
    settings: GuardSettings = field(default_factory=GuardSettings)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        #: one flush at a time: a flush that finds the writer thread mid-write waits for its
        #: commit, so "flush() returned" means "everything refused before it is stored"
        self._flush_lock = threading.Lock()
        self._sources: dict[str, _Source] = {}
        self._rows: deque[dict[str, Any]] = deque()
        self._summary: dict[tuple[str, str, str], _Summary] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_prune = 0.0
        #: counters for the health page and tests
        self.refused_total = 0
        self.throttled_total = 0
        self.written_rows = 0

    # -- the request side (event loop; no database) ---------------------------------------------
    def source_of(self, client: str | None, headers: Mapping[str, str]) -> str:
        """The client address; through a trusted proxy, the last address it was not told by a
        trusted proxy (the right-most untrusted hop of X-Forwarded-For) — core/proxies.py, the
        rule of every per-address limit."""
        return client_address(client, headers, self.settings.trusted_proxies)

    def _state(self, source: str, now: float) -> _Source:
        st = self._sources.get(source)
        if st is None or now - st.window_start > self.settings.throttle_seconds:
            if len(self._sources) > 100_000:  # spread over many addresses: forget old windows
                self._forget(now)
            st = _Source(window_start=now, minute_start=st.minute_start if st else now,
                         kept=st.kept if st else 0)
            self._sources[source] = st
        if now - st.minute_start > 60.0:
            st.minute_start, st.kept = now, 0
        return st

    def _forget(self, now: float) -> None:
        horizon = max(self.settings.throttle_seconds, 60.0)
        for key in [k for k, s in self._sources.items() if now - s.window_start > horizon]:
            del self._sources[key]

    def throttled(self, source: str) -> bool:
        """True when ``source`` sent only unverifiable messages lately, too many of them.

        A throttled source stays throttled while it keeps sending: each refused request starts
        its window again, so it is let through only after ``throttle_seconds`` of quiet. (With a
        fixed window a steady flood got ``throttle_after`` fully checked requests — an RSA
        verification each — every ``throttle_seconds`` per source and per server process, a
        third of a core at 5,000 junk requests/s from 8 addresses; docs/benchmarks.md.)"""
        with self._lock:
            now = time.monotonic()
            st = self._state(source, now)
            if st.verified == 0 and st.refused >= self.settings.throttle_after:
                st.window_start = now
                return True
            return False

    def verified(self, source: str) -> None:
        """A message from ``source`` verified: it is a channel (or its proxy), never throttled."""
        with self._lock:
            self._state(source, time.monotonic()).verified += 1

    def refused(self, *, channel: str, source: str, code: str, detail: str | None,
                claimed_transaction_id: str | None = None, body: bytes | None = None,
                body_size: int | None = None) -> None:
        """Keep (or count) one refusal of a message nobody proved the channel sent."""
        at = self.clock.now()
        size = len(body) if body is not None else (body_size or 0)
        with self._lock:
            self.refused_total += 1
            if code == "throttled":
                self.throttled_total += 1
            st = self._state(source, time.monotonic())
            st.refused += 1
            if st.kept < self.settings.keep_per_minute and len(self._rows) < self.settings.max_pending:
                st.kept += 1
                self._rows.append({
                    "channel": channel[:12], "source": source, "code": code[:24],
                    "detail": printable(detail, 200),
                    "claimed_transaction_id": printable(claimed_transaction_id, 64),
                    "body_sha256": hashlib.sha256(body).hexdigest() if body is not None else None,
                    "body_size": size, "count": 1, "first_at": at, "last_at": at})
            else:
                key = (channel[:12], source, code[:24])
                s = self._summary.get(key)
                if s is None:
                    self._summary[key] = _Summary(1, at, at, size)
                else:
                    s.count += 1
                    s.last_at = at
                    s.body_size += size
        if self._thread is None:
            self.start()

    # -- the writer side (its own thread, its own transactions) ---------------------------------
    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                stop = self._stop = threading.Event()
                self._thread = threading.Thread(target=self._run, args=(stop,), name="refusal-log",
                                                daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """End the writer thread (a later refusal starts another) and write what is pending."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout=5)
        self.flush()

    def _run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            # after a failure, wait longer each time (up to a minute): a database that is gone
            # is retried without flooding the server log
            self._wake.wait(min(60.0, self.settings.flush_seconds * 2 ** min(failures, 7)))
            self._wake.clear()
            try:
                self.flush()
                failures = 0
            except Exception:  # the log must not kill the server; the counts are put back
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    log.exception("payment refusal log: flush failed (%d in a row), will retry",
                                  failures)

    def flush(self) -> int:
        """Write what is pending in one transaction; prune beyond ``max_rows`` once a minute.
        Returns the rows written. On a database error the rows are counted back into the
        summaries (so they are still reported) and the error is raised.

        Flushes are serialised: without that, a caller's flush could run while the writer thread
        held the rows it had just taken but had not committed, find nothing pending and return
        before those rows were visible (seen on a loaded CI machine: an empty log after flush)."""
        with self._flush_lock:
            return self._flush()

    def _flush(self) -> int:
        with self._lock:
            rows = list(self._rows)
            self._rows.clear()
            summary, self._summary = self._summary, {}
        out = rows + [{"channel": c, "source": src, "code": code, "detail": SUMMARY,
                       "claimed_transaction_id": None, "body_sha256": None, "body_size": s.body_size,
                       "count": s.count, "first_at": s.first_at, "last_at": s.last_at}
                      for (c, src, code), s in summary.items()]
        if not out:
            return 0
        try:
            with self.db.engine.begin() as conn:
                conn.execute(insert(RefusalLogRow), out)
                now = time.monotonic()
                if now - self._last_prune > 60.0:
                    self._last_prune = now
                    top = conn.execute(select(func.max(RefusalLogRow.id))).scalar_one()
                    if top is not None and top > self.settings.max_rows:
                        conn.execute(delete(RefusalLogRow).where(
                            RefusalLogRow.id <= top - self.settings.max_rows))
        except Exception:
            with self._lock:
                for r in out:
                    key = (r["channel"], r["source"], r["code"])
                    s = self._summary.get(key)
                    if s is None:
                        self._summary[key] = _Summary(int(r["count"]), r["first_at"], r["last_at"],
                                                      int(r["body_size"]))
                    else:
                        s.count += int(r["count"])
            raise
        self.written_rows += len(out)
        return len(out)


def recent_refusals(db: Database, *, limit: int = 100, before_id: int | None = None) -> list[dict[str, Any]]:
    """The refusal log, newest first, one page (``before_id`` from the previous page's last)."""
    q = select(RefusalLogRow).order_by(RefusalLogRow.id.desc()).limit(max(1, min(limit, 1000)))
    if before_id is not None:
        q = q.where(RefusalLogRow.id < before_id)
    with db.session() as s:
        return [{"id": r.id, "channel": r.channel, "source": r.source, "code": r.code,
                 "detail": r.detail, "claimed_transaction_id": r.claimed_transaction_id,
                 "body_sha256": r.body_sha256, "body_size": r.body_size, "count": r.count,
                 "first_at": r.first_at.isoformat(), "last_at": r.last_at.isoformat()}
                for r in s.execute(q).scalars()]
