"""How far two runs of the model agree: the measure behind every precision and device claim.

Two panoptic maps number their segments independently, so pixels are compared by what their
segment is: the class and the decoder query that created it (or no segment). A bf16 run that
paints exactly the same segments as the fp32 run agrees on 100 % of the pixels.
"""
from __future__ import annotations

import numpy as np

from fcclip_core.results import PanopticResult


def _segment_keys(result: PanopticResult) -> np.ndarray:
    """Per pixel: 0 for no segment, else a number naming (category, creating query)."""
    ids = result.segment_ids
    lut = np.zeros(int(ids.max(initial=0)) + 1, dtype=np.int64)
    for seg in result.segments:
        lut[seg.id] = 1 + seg.category_id + (1 << 20) * (seg.query_index + 1)
    return lut[ids]


def panoptic_agreement(a: PanopticResult, b: PanopticResult) -> float:
    """Fraction of pixels both results give to the same segment (same class and query)."""
    if a.segment_ids.shape != b.segment_ids.shape:
        raise ValueError(f"panoptic maps differ in size: {a.segment_ids.shape} vs {b.segment_ids.shape}")
    if a.segment_ids.size == 0:
        return 1.0
    return float((_segment_keys(a) == _segment_keys(b)).mean())
