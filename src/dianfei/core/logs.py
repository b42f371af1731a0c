"""Logging: plain lines for a person, JSON lines for a log collector (``DIANFEI_LOG_FORMAT=json``),
each carrying the request id or the job run it belongs to.

The web layer sets :data:`request_id` for each request (from an ``X-Request-ID`` header a proxy
sent, else a new one, and answers it back); the job worker sets :data:`job_run` while a run
works. Every log line written meanwhile — by any package — carries them, so one failure can be
followed from the proxy's log to ours.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

request_id: ContextVar[str | None] = ContextVar("dianfei_request_id", default=None)
job_run: ContextVar[str | None] = ContextVar("dianfei_job_run", default=None)
FORMATS = ("text", "json")


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.job_run = job_run.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request_id, job_run,
    and the exception's trace when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
               "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        for key in ("request_id", "job_run"):
            value = getattr(record, key, None)
            if value:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = [f"{k}={getattr(record, k)}" for k in ("request_id", "job_run")
                if getattr(record, k, None)]
        return f"{line} [{' '.join(tags)}]" if tags else line


def configure_logging(fmt: str | None = None, level: str | None = None) -> None:
    """Log to standard error in ``fmt`` (DIANFEI_LOG_FORMAT: text or json) at ``level``
    (DIANFEI_LOG_LEVEL, default INFO). An unknown value is refused, not ignored."""
    fmt = (fmt or os.environ.get("DIANFEI_LOG_FORMAT") or "text").lower()
    if fmt not in FORMATS:
        raise ValueError(f"DIANFEI_LOG_FORMAT must be text or json, got {fmt!r}")
    level = (level or os.environ.get("DIANFEI_LOG_LEVEL") or "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"DIANFEI_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, "
                         f"got {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Context())
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         _Text("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_dianfei", False):
            root.removeHandler(h)
    handler._dianfei = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
