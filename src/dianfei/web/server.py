"""Running the console with uvicorn (``dianfei serve`` and ``dianfei demo``)."""

from __future__ import annotations

import sys


def serve_console(host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    from dianfei.db.engine import open_database
    from dianfei.security.tokens import console_token
    from dianfei.web.app import create_app

    db = open_database()
    app = create_app(db)
    token = console_token(db.settings.data_dir)
    sys.stderr.write(f"console: http://{host}:{port}/session?token={token}\n")
    uvicorn.run(app, host=host, port=port, log_level="warning")
