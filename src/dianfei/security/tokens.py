"""Console access until user accounts exist: one operator token per installation.

The token comes from ``DIANFEI_CONSOLE_TOKEN`` or ``DATA_DIR/console.token`` (created with mode
0600 on first start and printed once), so a console on a shared intranet machine is never open
to whoever finds the port. Comparison is constant-time.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

ROLES = ("operator",)


def console_token(data_dir: Path) -> str:
    env = os.environ.get("DIANFEI_CONSOLE_TOKEN")
    if env:
        return env
    path = data_dir / "console.token"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def role_for(presented: str | None, expected: str) -> str | None:
    """The role a presented token grants, or None."""
    if presented and hmac.compare_digest(presented.encode(), expected.encode()):
        return "operator"
    return None
