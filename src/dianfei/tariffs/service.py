"""Entry points of the tariffs domain: the catalogue, quoting one bill, rating a whole run.

``dianfei quote`` goes through here and must start fast, so Polars is imported only inside
``rate_frame``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dianfei.core.clock import Period
from dianfei.core.errors import ConflictError, TariffError
from dianfei.core.money import fmt_yuan
from dianfei.tariffs.loader import load_directory, parse_tariff
from dianfei.tariffs.models import (
    Line,
    RatingError,
    Tariff,
    TariffVersion,
    Usage,
)
from dianfei.tariffs.rating_scalar import rate

if TYPE_CHECKING:
    import polars as pl

PRESETS_DIR = Path(__file__).with_name("presets")

__all__ = [
    "PRESETS_DIR",
    "Line",
    "TariffCatalogue",
    "TariffVersion",
    "Usage",
    "check_tariff_text",
    "install_tariff",
    "load_catalogue",
    "quote",
    "rate",
    "rate_frame",
    "tariff_change_plan",
]


class TariffCatalogue:
    """The tariffs of one directory, each with its dated versions."""

    def __init__(self, tariffs: dict[str, Tariff], directory: Path) -> None:
        self._tariffs = dict(sorted(tariffs.items()))
        self.directory = directory

    def ids(self) -> list[str]:
        return list(self._tariffs)

    def tariff(self, tariff_id: str) -> Tariff:
        try:
            return self._tariffs[tariff_id]
        except KeyError:
            raise RatingError("unknown_tariff", f"unknown tariff {tariff_id!r} (known: "
                                                f"{', '.join(self._tariffs)})") from None

    def versions(self, tariff_id: str) -> list[TariffVersion]:
        return list(self.tariff(tariff_id).versions)

    def version_for(self, tariff_id: str, period: Period) -> TariffVersion:
        """The version in force on the period's first day."""
        day = period.first_day
        for version in self.tariff(tariff_id).versions:
            if version.in_force_on(day):
                return version
        raise RatingError("no_tariff_in_force",
                          f"no version of tariff {tariff_id!r} is in force on {day}")


_CACHE: dict[Path, TariffCatalogue] = {}


def load_catalogue(directory: Path | None = None) -> TariffCatalogue:
    """Load (once per directory) and validate a tariff directory; ``None`` = packaged presets."""
    path = (directory or PRESETS_DIR).resolve()
    cached = _CACHE.get(path)
    if cached is None:
        cached = _CACHE[path] = TariffCatalogue(load_directory(path), path)
    return cached


def quote(catalogue: TariffCatalogue, tariff_id: str, period: Period,
          usage: Usage) -> dict[str, Any]:
    """The itemised charge for one usage, as ``dianfei quote --json`` prints it."""
    version = catalogue.version_for(tariff_id, period)
    lines = rate(version, period, usage)
    return {
        "tariff": tariff_id,
        "period": str(period),
        "version": version.effective_from.isoformat(),
        "lines": [line.to_json() for line in lines],
        "total": fmt_yuan(sum(line.amount for line in lines)),
    }


def rate_frame(catalogue: TariffCatalogue, period: Period, usage: pl.DataFrame,
               meters: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rate one row per account with Polars → (lines, errors); ``meters``: the per-meter rows
    of accounts billed on several meters. See ``rating_columnar``."""
    from dianfei.tariffs import rating_columnar

    return rating_columnar.rate_frame(catalogue, period, usage, meters)


#: a tariff id names its file: lower-case letters, digits and dashes only (no path)
_TARIFF_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def check_tariff_text(tariff_id: str, text: str) -> Tariff:
    """Validate the full TOML text of one tariff file (as ``tariffs list`` would load it);
    ``TariffError`` names the field. Nothing is written."""
    if not _TARIFF_ID.match(tariff_id):
        raise TariffError(f"tariff id {tariff_id!r}: lower-case letters, digits and dashes only")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TariffError(f"{tariff_id}.toml: not TOML: {exc}") from None
    return parse_tariff(data, f"{tariff_id}.toml", tariff_id)


def tariff_change_plan(directory: Path | None, tariff_id: str, text: str) -> dict[str, Any]:
    """What putting this tariff file in force would do, checked but not written: the file, the
    sha256 of the file before (None: a new tariff) and after, the versions it holds. Refused when
    the text is invalid, when the directory is the packaged presets (a utility changing its
    tariffs keeps its own: ``billing.tariff_dir`` / ``DIANFEI_TARIFF_DIR``) or when the rest of
    the directory does not load (the bill run would still fail)."""
    tariff = check_tariff_text(tariff_id, text)
    if directory is None or directory.resolve() == PRESETS_DIR.resolve():
        raise ConflictError("tariff changes are written to the utility's own tariff directory "
                            "(billing.tariff_dir / DIANFEI_TARIFF_DIR), never the packaged "
                            "presets: set one (a copy of the presets) first")
    path = directory.resolve()
    if not path.is_dir():
        raise ConflictError(f"tariff directory not found: {path}")
    target = path / f"{tariff_id}.toml"
    before = hashlib.sha256(target.read_bytes()).hexdigest() if target.exists() else None
    load_directory(path)
    return {"tariff_id": tariff_id, "file": target.name, "sha256_before": before,
            "sha256_after": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "versions": [{"effective_from": v.effective_from.isoformat(),
                          "effective_to": v.effective_to.isoformat() if v.effective_to else None,
                          "source": v.source} for v in tariff.versions]}


def install_tariff(directory: Path | None, tariff_id: str, text: str) -> dict[str, Any]:
    """Put a (new or changed) tariff file in force: checked as :func:`tariff_change_plan`
    checks it, then written atomically (a temporary file renamed over the old one); the next
    bill run or quote reads it. Returns the plan."""
    plan = tariff_change_plan(directory, tariff_id, text)
    assert directory is not None
    path = directory.resolve()
    fd, tmp = tempfile.mkstemp(prefix=f".{tariff_id}.", suffix=".tmp", dir=path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path / plan["file"])
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _CACHE.pop(path, None)
    return plan
