"""Per-group order statistics of many values at once, without a loop over groups.

One sort of a combined key ``group * stride + (value - min)`` lays every group's values out
sorted and end to end; quantiles are then gathers at computed ranks and trimmed means one
``reduceat`` over the ranks they keep. The key is float32 (numpy's vectorised sort) unless that
would lose more than a quarter of ``resolution``, then float64.
"""
from __future__ import annotations

import numpy as np


class SortedGroups:
    """``values`` [n] sorted within each group id of ``groups`` [n] (ids in [0, num_groups)).

    Passing ``groups`` already as float32 saves a conversion when several value arrays share
    them.
    """

    def __init__(self, values: np.ndarray, groups: np.ndarray, num_groups: int,
                 resolution: float) -> None:
        self.num_groups = num_groups
        self.lo = float(values.min()) if values.size else 0.0
        spread = float(values.max()) - self.lo if values.size else 0.0
        self.stride = spread + max(resolution, 1e-3 * spread)  # groups never overlap
        top = num_groups * self.stride
        self.dtype = np.float32 if top * 2.0 ** -23 <= resolution / 4 else np.float64
        group_key = groups if groups.dtype == self.dtype else groups.astype(self.dtype)
        key = np.subtract(values, self.lo, dtype=self.dtype)  # >= 0 first: a group's keys
        key += group_key * self.dtype(self.stride)  # then never round below its start
        key.sort()
        self.key = key
        bounds = np.arange(num_groups + 1).astype(self.dtype) * self.dtype(self.stride)
        self.starts = np.searchsorted(key, bounds, side="left")
        self.counts = np.diff(self.starts)

    def _value(self, flat: np.ndarray, groups: np.ndarray) -> np.ndarray:
        return self.key[flat].astype(np.float64) - groups * self.stride + self.lo

    def quantiles(self, quantiles: np.ndarray) -> np.ndarray:
        """[G, Q]: numpy's linear quantiles (rank ``q * (count - 1)``); NaN for empty groups."""
        q = np.asarray(quantiles, dtype=np.float64)
        out = np.full((self.num_groups, q.size), np.nan)
        present = np.flatnonzero(self.counts > 0)
        if present.size == 0:
            return out
        rank = q[None, :] * (self.counts[present, None] - 1)
        below = np.floor(rank).astype(np.int64)
        frac = rank - below
        above = np.minimum(below + 1, self.counts[present, None] - 1)
        start, g = self.starts[present, None], present[:, None]
        out[present] = (self._value(start + below, g) * (1 - frac)
                        + self._value(start + above, g) * frac)
        return out

    def trimmed_means(self, low: float, high: float) -> np.ndarray:
        """[G]: mean of each group's values whose rank lies in [low, high] * (count - 1);
        NaN for empty groups."""
        out = np.full(self.num_groups, np.nan)
        present = np.flatnonzero(self.counts > 0)
        if present.size == 0:
            return out
        last = self.counts[present] - 1
        first = np.ceil(low * last).astype(np.int64)
        stop = np.maximum(np.floor(high * last).astype(np.int64) + 1, first + 1)
        a, b = self.starts[present] + first, self.starts[present] + stop
        # one pass: reduceat sums [a_g, b_g) (even entries) and the gaps between them
        bounds = np.stack([a, b], axis=1).ravel()
        if bounds[-1] == self.key.size:
            bounds = bounds[:-1]
        sums = np.add.reduceat(self.key, bounds, dtype=np.float64)[::2]
        out[present] = sums / (b - a) - present * self.stride + self.lo
        return out
