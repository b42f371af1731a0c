"""``/metrics`` (Prometheus), ``/readyz``, request ids and request latency.

``/healthz`` says the process answers; ``/readyz`` says it can do its work: the database answers,
its schema is the one this code needs, and the keys of personal data load — a load balancer sends
traffic only to a ready process. ``/metrics`` is read with a bearer token of a role holding
``metrics:read`` (``monitor``, made for Prometheus, or ``admin``): the figures of every package
(read from the database at scrape time, the same from every process) and this process's request
latency by route (label ``process``: each server process keeps its own).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse

from dianfei.core.logs import request_id
from dianfei.core.metrics import BUCKETS, Metric, render
from dianfei.db.engine import Database
from dianfei.web.auth import guard

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


class Latency:
    """Request counts and latency histograms of this process, by method, route and status."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: per (method, route, status class): bucket counts, then the request count
        self.series: dict[tuple[str, str, str], list[int]] = {}
        self.seconds: dict[tuple[str, str, str], float] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, f"{status // 100}xx")
        with self.lock:
            s = self.series.get(key)
            if s is None:
                s = self.series[key] = [0] * (len(BUCKETS) + 1)  # buckets…, count
            for i, b in enumerate(BUCKETS):
                if seconds <= b:
                    s[i] += 1
            s[-1] += 1
            self.seconds[key] = self.seconds.get(key, 0.0) + seconds

    def metrics(self) -> list[Metric]:
        pid = str(os.getpid())
        samples: list[tuple[dict[str, str], int | float]] = []
        with self.lock:
            items = sorted((k, list(v)) for k, v in self.series.items())
            seconds = dict(self.seconds)
        for (method, route, status), s in items:
            base = {"method": method, "route": route, "status": status, "process": pid}
            for i, b in enumerate(BUCKETS):
                samples.append(({**base, "le": repr(b)}, s[i]))
            samples.append(({**base, "le": "+Inf"}, s[-1]))
        hist = Metric("dianfei_http_request_duration_seconds_bucket",
                      "request latency of this server process, by route", "counter",
                      tuple(samples))
        sums = Metric("dianfei_http_request_duration_seconds_sum", "total request seconds",
                      "counter", tuple(({"method": m, "route": r, "status": st, "process": pid},
                                        seconds[(m, r, st)]) for (m, r, st), _ in items))
        counts = Metric("dianfei_http_requests_total", "requests answered", "counter",
                        tuple(({"method": m, "route": r, "status": st, "process": pid}, s[-1])
                              for (m, r, st), s in items))
        return [hist, sums, counts]


#: request ids: a random prefix per process and a counter. uuid4() reads os.urandom, which on
#: this kind of virtual machine costs ~0.1 ms a call — a quarter of a junk callback's whole cost
#: under a flood (docs/benchmarks.md); unique is all a request id needs to be. Server workers are
#: spawned, not forked, so each imports this module and draws its own prefix.
_RID_PREFIX = os.urandom(8).hex()
_RID_COUNTER = itertools.count()


def request_id_for(given: str | None) -> str:
    """The caller's X-Request-Id when it is short and printable, else a new one (32 hex)."""
    if given and len(given) <= 64 and given.isprintable():
        return given
    return f"{_RID_PREFIX}{next(_RID_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"


class RequestContext:
    """Pure ASGI middleware (no per-request task or body copy: the callback routes stay fast):
    a request id for the logs and the answer, and the request's latency by route template."""

    def __init__(self, app: ASGIApp, latency: Latency) -> None:
        self.app, self.latency = app, latency

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                      send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope.get("headers", [])
                      if k == b"x-request-id"), None)
        rid = request_id_for(given)
        token = request_id.set(rid)
        status = 500
        start = time.perf_counter()

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.latency.observe(scope.get("method", ""), path, status,
                                 time.perf_counter() - start)
            request_id.reset(token)


def readiness(db: Database) -> tuple[bool, dict[str, str]]:
    """Each check's verdict in words; ready when all are ``ok``."""
    from sqlalchemy import text

    from dianfei.db.engine import schema_is_current
    from dianfei.db.pii import cipher_for

    checks: dict[str, str] = {}
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # reported to the probe, in words
        checks["database"] = f"unreachable: {type(exc).__name__}"
        return False, checks
    checks["schema"] = "ok" if schema_is_current(db.engine) else \
        "older than this code: run `dianfei migrate`"
    try:
        cipher_for(db)
        checks["keys"] = "ok"
    except Exception as exc:  # a missing keyring: the process cannot read personal data
        checks["keys"] = f"unusable: {exc}"
    return all(v == "ok" for v in checks.values()), checks


def register(app: FastAPI, db: Database) -> None:
    latency = Latency()
    app.state.latency = latency  # the callbacks' front door (web/payments_api.py) observes too
    app.add_middleware(RequestContext, latency=latency)

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        ready, checks = readiness(db)
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                            status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False, response_class=PlainTextResponse,
             **guard("metrics:read"))
    def metrics() -> PlainTextResponse:
        from dianfei.billing.service import operational_metrics as billing
        from dianfei.collections.service import operational_metrics as collections
        from dianfei.events.service import operational_metrics as events
        from dianfei.jobs.service import operational_metrics as jobs
        from dianfei.notify.service import operational_metrics as notify
        from dianfei.payments.service import operational_metrics as payments

        found: list[Metric] = []
        with db.engine.connect() as conn:
            for part in (billing, payments, notify, collections, events, jobs):
                found.extend(part(conn))
        found.extend(latency.metrics())
        return PlainTextResponse(render(found), media_type="text/plain; version=0.0.4")
