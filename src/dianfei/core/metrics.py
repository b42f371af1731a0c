"""Operational figures for ``/metrics`` (Prometheus text format 0.0.4), without a client library.

Each package's service answers its own figures (``operational_metrics(conn)``) as :class:`Metric`
values read from the database at scrape time, so every server process reports the same numbers
whichever one Prometheus reaches. What lives only in a process (request latency) is kept by the
web layer with a ``process`` label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: request-latency buckets (seconds): a callback answers in milliseconds, a report in seconds
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Metric:
    name: str
    help: str
    kind: str  # gauge, counter
    #: counts and fen are whole numbers (int); durations are seconds (float)
    samples: tuple[tuple[Mapping[str, str], int | float], ...] = field(default_factory=tuple)


def grouped(name: str, help_: str, kind: str, label: str,
            rows: Iterable[Any]) -> Metric:
    """A metric with one sample per (label value, whole number) row: counts, fen."""
    return Metric(name, help_, kind, tuple(({label: str(r[0])}, int(r[1] or 0)) for r in rows))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: int | float) -> str:
    return str(v) if isinstance(v, int) else repr(v)


def render(metrics: Iterable[Metric]) -> str:
    """The exposition text: # HELP, # TYPE and the samples of each metric."""
    out: list[str] = []
    for m in metrics:
        out.append(f"# HELP {m.name} {m.help}")
        out.append(f"# TYPE {m.name} {m.kind}")
        for labels, value in m.samples:
            lab = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items()))
            out.append(f"{m.name}{{{lab}}} {_num(value)}" if lab else f"{m.name} {_num(value)}")
    return "\n".join(out) + "\n"
