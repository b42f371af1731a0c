"""In-tree fakes for the edges collections talks to: the notify outbox's dispatch (an SMS
gateway we do not run) and a meter's remote switch. The fake notifier writes the real
``notify_outbox`` rows, so collections reads SENT times exactly as in production."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from dianfei.collections.notices import Notice
from dianfei.core.clock import Clock
from dianfei.db.engine import Database
from dianfei.metering.service import CommandResult

LEGALLY_REQUIRED = ("stop_notice", "pre_stop", "cutoff_notice")


@dataclass
class FakeNotifier:
    """enqueue = an outbox row (idempotent on key); dispatch = 'sent' at the clock's now,
    unless the notice's channel is in ``failing``: then 'failed', and — as notify does for a
    legally required notice — a paper letter ``<key>#letter`` queued and sent in its place
    (unless letters fail too)."""

    failing: set[str] = field(default_factory=set)

    def enqueue(self, session: Session, notices: list[Notice], *, clock: Clock) -> None:
        """One executemany of INSERT … ON CONFLICT (key) DO NOTHING: idempotent on key, and
        cheap enough that a benchmark measures collections rather than this fake."""
        if not notices:
            return
        now = clock.now().astimezone(UTC).replace(tzinfo=None)
        session.flush()
        session.execute(text(
            "INSERT INTO notify_outbox (key, account_id, customer_id, notice, channel, context, "
            "status, queued_at, not_before, next_attempt_at, attempts, updated_at) VALUES "
            "(:key, :a, :c, :notice, :channel, :ctx, 'queued', :now, NULL, :now, 0, :now) "
            "ON CONFLICT (key) DO NOTHING"),
            [{"key": n.key, "a": n.account_id, "c": n.customer_id, "notice": n.notice,
              "channel": n.channel, "ctx": json.dumps(dict(n.context)), "now": now}
             for n in notices])

    def dispatch(self, db: Database, *, clock: Clock, senders: Any = None) -> None:
        now = clock.now().astimezone(UTC).replace(tzinfo=None)
        with db.engine.begin() as conn:
            for ch in self.failing:
                failed = conn.execute(text(
                    "SELECT outbox_id, key, account_id, customer_id, notice, context FROM notify_outbox "
                    "WHERE status = 'queued' AND channel = :ch"), {"ch": ch}).all()
                conn.execute(text("UPDATE notify_outbox SET status = 'failed', updated_at = :n "
                                  "WHERE status = 'queued' AND channel = :ch"), {"n": now, "ch": ch})
                # as notify does: a legally required notice that failed goes out as a letter
                for r in failed:
                    if r[4] in LEGALLY_REQUIRED and ch != "letter":
                        conn.execute(text(
                            "INSERT INTO notify_outbox (key, account_id, customer_id, notice, channel, "
                            "context, status, queued_at, next_attempt_at, attempts, updated_at, "
                            "fallback_of) VALUES (:k, :a, :c, :n, 'letter', :ctx, 'queued', :t, :t, 0, "
                            ":t, :f)"), {"k": f"{r[1]}#letter", "a": r[2], "c": r[3], "n": r[4],
                                         "ctx": r[5], "t": now, "f": r[0]})
            for ch in self.failing & {"letter"}:
                conn.execute(text("UPDATE notify_outbox SET status = 'failed', updated_at = :n "
                                  "WHERE status = 'queued' AND channel = :ch"), {"n": now, "ch": ch})
            conn.execute(text("UPDATE notify_outbox SET status = 'sent', sent_at = :n, updated_at = :n, "
                              "attempts = attempts + 1 WHERE status = 'queued' AND next_attempt_at <= :n"),
                         {"n": now})


@dataclass
class FakeSwitch:
    """Records every trip/close; fails the first ``fail`` calls (retryable)."""

    fail: int = 0
    calls: list[tuple[str, str]] = field(default_factory=list)

    def _do(self, meter_id: str, action: str) -> CommandResult:
        self.calls.append((action, meter_id))
        if self.fail > 0:
            self.fail -= 1
            return CommandResult(meter_id, action, False, "no reply from the concentrator", True)
        return CommandResult(meter_id, action, True, "confirmed (0x9C)", False)

    def trip(self, meter_id: str) -> CommandResult:
        return self._do(meter_id, "trip")

    def close(self, meter_id: str) -> CommandResult:
        return self._do(meter_id, "close")
