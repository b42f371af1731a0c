"""The hashed lock files `make setup` installs from (issue 17 item 6): they must say what
pyproject.toml asks for — every dependency and dev extra pinned, at a version its specifier
allows, with hashes — or a reproducible install would quietly be of something else. Offline: no
resolver runs here (`make lock` regenerates the files)."""

from __future__ import annotations

import re
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
