"""Running the console with uvicorn (``dianfei serve`` and ``dianfei demo``)."""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def app_factory() -> FastAPI:
    """The application for one server process (each uvicorn worker opens its own pool)."""
    from dianfei.db.engine import open_database
    from dianfei.web.app import create_app

    # The callback writer thread (payments/fastpath.py) waits on PostgreSQL many times a batch;
    # with the default 5 ms GIL switch interval each wake-up can queue behind the event loop for
    # that long. 1 ms keeps a batch's round trips close to the network time.
    sys.setswitchinterval(0.001)
    app = create_app(open_database())
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
