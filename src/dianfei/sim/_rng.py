"""Seeded random streams, one per concern, so adding a column later never moves the others.

Every draw in the simulator comes from ``stream(seed, concern, *keys)``: a PCG64 generator
seeded by a ``SeedSequence`` whose spawn key is (crc32 of the concern's name, *keys). Per-period
draws pass the period's absolute index (``Period.index()``), so month 24 does not depend on
whether months 1..23 were ever asked for, nor in which order.
"""

from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, concern: str, *keys: int) -> np.random.Generator:
    """An independent generator for ``concern`` (and e.g. a period index) under ``seed``."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    spawn_key = (zlib.crc32(concern.encode("utf-8")), *(int(k) for k in keys))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=spawn_key)))


def pick(rng: np.random.Generator, probs: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Vectorised categorical draw: row ``groups[i]`` of ``probs`` gives customer i's weights.

    ``probs`` is (G, K) with rows summing to 1; returns an int array of category indices.
    """
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0 + 1e-9
    u = rng.random(size=int(groups.shape[0]))
    rows = cum[groups]
    out: np.ndarray = (u[:, None] >= rows).sum(axis=1)
    return out
