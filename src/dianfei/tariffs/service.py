"""Entry points of the tariffs domain: the catalogue, quoting one bill, rating a whole run.

``dianfei quote`` goes through here and must start fast, so Polars is imported only inside
``rate_frame``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dianfei.core.clock import Period
from dianfei.core.money import fmt_yuan
from dianfei.tariffs.loader import load_directory
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
    "load_catalogue",
    "quote",
    "rate",
    "rate_frame",
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
