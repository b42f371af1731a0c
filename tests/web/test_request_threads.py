"""``[web] threads``: how many requests one server process works on at once (web/server.py)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dianfei.core.errors import ValidationError
from dianfei.web.server import WebSettings, limit_request_threads


def test_the_limit_applies_to_the_running_process() -> None:
    import anyio.to_thread

    app = FastAPI()

    @app.get("/tokens")
    async def tokens() -> int:
        return int(anyio.to_thread.current_default_thread_limiter().total_tokens)

    limit_request_threads(app, 3)
    with TestClient(app) as client:
        assert client.get("/tokens").json() == 3


def test_settings_from_the_file_and_the_environment() -> None:
    assert WebSettings.from_settings({}, {}).threads == 2
    assert WebSettings.from_settings({"web": {"threads": 6}}, {}).threads == 6
    assert WebSettings.from_settings({"web": {"threads": 6}},
                                     {"DIANFEI_WEB_THREADS": "1"}).threads == 1


@pytest.mark.parametrize(("raw", "env", "message"), [
    ({"web": {"threads": 0}}, {}, "[web] threads must be between 1 and 64, got 0"),
    ({"web": {"threads": True}}, {}, "[web] threads must be between 1 and 64, got True"),
    ({}, {"DIANFEI_WEB_THREADS": "many"}, "DIANFEI_WEB_THREADS must be a whole number, got 'many'"),
    ({"web": {"thread": 4}}, {}, "[web] unknown key(s): thread"),
    ({"web": 4}, {}, "[web] must be a table"),
])
def test_wrong_values_are_named(raw: dict[str, object], env: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        WebSettings.from_settings(raw, env)
    assert message in str(err.value)
