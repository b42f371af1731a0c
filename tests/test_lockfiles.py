"""The hashed lock files `make setup` installs from (issue 17 item 6): they must say what
pyproject.toml asks for — every dependency and dev extra pinned, at a version its specifier
allows, with hashes — or a reproducible install would quietly be of something else. Offline: no
resolver runs here (`make lock` regenerates the files). And `.ci/audit` (pip-audit) is skipped,
saying so, where the advisories cannot be reached, and runs strict where they can."""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


@dataclass
class Pin:
    version: Version
    marker: Marker | None
    hashes: int = 0


def _locked(name: str) -> dict[str, list[Pin]]:
    """name → its pins in a lock file (a name may be pinned twice, for two Python versions)."""
    pins: dict[str, list[Pin]] = {}
    current: Pin | None = None
    for line in (ROOT / name).read_text().splitlines():
        m = _PIN.match(line)
        if m:
            current = Pin(Version(m.group(2)), Marker(m.group(3)) if m.group(3) else None)
            pins.setdefault(canonicalize_name(m.group(1)), []).append(current)
        elif line.strip().startswith("--hash=sha256:") and current is not None:
            current.hashes += 1
    return pins


def _project() -> dict[str, list[Requirement]]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {"requirements.lock": [Requirement(r) for r in meta["dependencies"]],
            "requirements-dev.lock": [Requirement(r) for r in
                                      meta["dependencies"] + meta["optional-dependencies"]["dev"]]}


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_every_dependency_is_pinned_with_hashes_at_an_allowed_version(lock: str) -> None:
    pins = _locked(lock)
    assert pins, f"{lock} pins nothing"
    for name, rows in pins.items():
        for pin in rows:
            assert pin.hashes >= 1, f"{lock}: {name}=={pin.version} has no --hash"
    for py in ("3.11", "3.12", "3.13"):
        env = {"python_version": py, "python_full_version": f"{py}.0", "sys_platform": "linux",
               "platform_system": "Linux"}
        for req in _project()[lock]:
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            chosen = [p.version for p in pins.get(canonicalize_name(req.name), [])
                      if p.marker is None or p.marker.evaluate(env)]
            assert chosen, f"{lock}: {req.name} (pyproject.toml) is not locked for Python {py}"
            assert all(req.specifier.contains(v, prereleases=True) for v in chosen), (
                f"{lock}: {req.name} locked at {chosen}, pyproject.toml asks {req.specifier}; "
                "run `make lock`")


def test_the_dev_lock_installs_the_same_runtime_packages() -> None:
    runtime, dev = _locked("requirements.lock"), _locked("requirements-dev.lock")
    for name, rows in runtime.items():
        pinned = {(p.version, str(p.marker)) for p in rows}
        assert pinned <= {(p.version, str(p.marker)) for p in dev.get(name, [])}, (
            f"{name}: requirements.lock and requirements-dev.lock disagree; run `make lock`")


def _audit(tmp_path: Path, probe: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``.ci/audit`` with a stand-in pip-audit that records its arguments (and fails when told)."""
    stub = tmp_path / "pip-audit"
    stub.write_text("#!/bin/sh\necho \"$@\" >> \"$AUDIT_CALLS\"\nexit ${AUDIT_STUB_RC:-0}\n")
    stub.chmod(0o755)
    return subprocess.run(
        [str(ROOT / ".ci" / "audit")], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PIP_AUDIT": str(stub), "PYTHON": sys.executable,
             "PIP_AUDIT_PROBE": probe, "AUDIT_CALLS": str(tmp_path / "calls"), **env})


def test_the_audit_is_skipped_saying_so_when_the_advisories_are_out_of_reach(
        tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/pypi/jinja2/2.11.2/json"
    res = _audit(tmp_path, closed)
    assert res.returncode == 0 and "audit SKIPPED" in res.stderr and "NOT checked" in res.stderr
    assert not (tmp_path / "calls").exists()
    assert _audit(tmp_path, closed, AUDIT_REQUIRED="1").returncode == 1


def test_the_audit_runs_strict_on_both_locks_when_the_advisories_answer(tmp_path: Path) -> None:
    class Advisories(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"vulnerabilities": [{"id": "PYSEC-2021-66"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Advisories)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        probe = f"http://127.0.0.1:{server.server_port}/pypi/jinja2/2.11.2/json"
        res = _audit(tmp_path, probe)
        assert res.returncode == 0, res.stderr
        calls = (tmp_path / "calls").read_text().splitlines()
        assert [c.split()[-1] for c in calls] == ["requirements.lock", "requirements-dev.lock"]
        assert all("--strict" in c and "--require-hashes" in c for c in calls)
        assert _audit(tmp_path, probe, AUDIT_STUB_RC="1").returncode == 1  # a finding fails
    finally:
        server.shutdown()
