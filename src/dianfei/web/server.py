"""Running the console with uvicorn (``dianfei serve`` and ``dianfei demo``)."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dianfei.core.errors import ValidationError

if TYPE_CHECKING:
    from fastapi import FastAPI


@dataclass(frozen=True)
class WebSettings:
    """``[web]`` of dianfei.toml (``DIANFEI_WEB_THREADS`` overrides ``threads``).

    ``threads``: how many requests one server process works on at once (the rest wait their
    turn). A Python process runs one thread at a time, so a page costing milliseconds of CPU
    gains nothing from more threads and loses a great deal: with Starlette's default 40, every
    page shares the process with dozens of others, each takes 40 times as long and the CPU a
    page costs grew by half (thread switches). Measured with 500 portal users (docs/benchmarks.md):
    p95 2 s with 40 threads, 0.33 s with 4, 0.17–0.19 s with 2 on PostgreSQL. More capacity
    comes from more processes (``dianfei serve --workers``), one per core. Raise ``threads``
    only where slow staff reports must not queue behind each other."""

    threads: int = 2

    @classmethod
    def from_settings(cls, raw: Mapping[str, Any], env: Mapping[str, str] | None = None,
                      ) -> WebSettings:
        env = os.environ if env is None else env
        section = raw.get("web", {}) or {}
        if not isinstance(section, Mapping):
            raise ValidationError("[web] must be a table")
        unknown = sorted(set(section) - {"threads"})
        if unknown:
            raise ValidationError(f"[web] unknown key(s): {', '.join(unknown)} (known: threads)")
        value: Any = env.get("DIANFEI_WEB_THREADS", section.get("threads", cls.threads))
        where = "DIANFEI_WEB_THREADS" if "DIANFEI_WEB_THREADS" in env else "[web] threads"
        try:
            threads = int(value)
        except (TypeError, ValueError):
            raise ValidationError(f"{where} must be a whole number, got {value!r}") from None
        if isinstance(value, bool) or not 1 <= threads <= 64:
            raise ValidationError(f"{where} must be between 1 and 64, got {value!r}")
        return cls(threads=threads)


def limit_request_threads(app: FastAPI, threads: int) -> None:
    """Let at most ``threads`` of this process's requests run at once (see WebSettings).
    Applies to the synchronous routes and the work they hand to the thread pool."""

    async def _limit() -> None:
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = threads

    app.router.on_startup.append(_limit)


def app_factory() -> FastAPI:
    """The application for one server process (each uvicorn worker opens its own pool)."""
    from dianfei.db.engine import open_database
    from dianfei.web.app import create_app

    # The callback writer thread (payments/fastpath.py) waits on PostgreSQL many times a batch;
    # with the default 5 ms GIL switch interval each wake-up can queue behind the event loop for
    # that long. 1 ms keeps a batch's round trips close to the network time.
    sys.setswitchinterval(0.001)
    db = open_database()
    app = create_app(db)
    limit_request_threads(app, WebSettings.from_settings(db.settings.raw).threads)
    batcher = getattr(app.state, "callback_batcher", None)
    if batcher is not None:
        batcher.start(connect=True)  # in this worker process, before the first callback
    # what was built at start-up lives as long as the process: keep it out of the collector's
    # full passes (fewer long pauses under load)
    gc.freeze()
    return app


def serve_console(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    import uvicorn

    from dianfei.db.engine import open_database
    from dianfei.security.service import count_users

    db = open_database()  # migrates once, before any worker starts
    from dianfei.audit.service import record_current_configuration
    from dianfei.core.settings import load_settings

    # the configuration this server acts on is on the audit chain before the first request
    record_current_configuration(db.engine, load_settings())
    with db.session() as s:
        users = count_users(s)
    db.engine.dispose()
    sys.stderr.write(f"console: http://{host}:{port}/login\n")
    if not users:
        sys.stderr.write("no users yet: create the first administrator with\n"
                         "  dianfei users add admin --role admin --password-stdin\n")
    # no access log (one formatted line per request costs ~5 % at callback rates); uvicorn picks
    # uvloop and httptools when installed ("auto"), about a third less per request than asyncio + h11
    # idle connections are kept 75 s (nginx's keepalive_timeout) rather than uvicorn's 5 s: a
    # customer reads a bill for longer than 5 s, and re-connecting for each click costs more
    uvicorn.run("dianfei.web.server:app_factory", factory=True, host=host, port=port,
                workers=workers, log_level="warning", access_log=False, timeout_keep_alive=75)
