"""The one mask scorer every task reads: full-resolution mask logits, in chunks or bands.

Semantic inference needs all queries at a band of output rows (``MaskSource.rows``);
panoptic and instance inference need some queries at every pixel, and share one pass over
them (``score_queries``): each query they need is upsampled once and turned into its sigmoid
and sign, which each ``QueryVisitor`` reads in place. Nothing here leaves the device the
logits are on, so on a GPU the pass costs no host synchronisation per query.
"""
from __future__ import annotations

from typing import Iterator

import torch

from fcclip_core.postprocess.inputs import HW
from fcclip_core.postprocess.resize import BandResizer, mask_logits_to_image

_MIN_BAND_ROWS = 8  # semantic bands: each band re-reads a few source rows at its edges
_MIN_CHUNK_QUERIES = 4  # query chunks: each chunk costs a few passes over [H, W] on top


class MaskSource:
    """Full-resolution mask logits already in memory."""

    owns_chunks = True  # chunks from queries() are fresh tensors the caller may overwrite

    def __init__(self, logits: torch.Tensor, chunk_bytes: int) -> None:
        self.logits = logits
        self.num_queries, self.height, self.width = logits.shape
        self.chunk_bytes = chunk_bytes

    @property
    def device(self) -> torch.device:
        return self.logits.device

    def query_chunk_size(self) -> int:
        return max(_MIN_CHUNK_QUERIES, self.chunk_bytes // (4 * self.height * self.width))

    def rows_per_band(self, num_classes: int) -> int:
        """Output rows per semantic band: one [max(Q, K), rows, W] float tensor per chunk."""
        per_row = 4 * self.width * max(self.num_queries, num_classes)
        return max(_MIN_BAND_ROWS, self.chunk_bytes // per_row)

    def queries(self, idx: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (position in idx, [m, H, W] logits) for consecutive chunks of ``idx``."""
        step = self.query_chunk_size()
        for s in range(0, idx.numel(), step):
            yield s, self.logits.index_select(0, idx[s:s + step].to(self.logits.device))

    def rows(self, r0: int, r1: int) -> torch.Tensor:
        """Mask logits of output rows [r0, r1) for all queries: [Q, r1 - r0, W]."""
        return self.logits[:, r0:r1]


class LowResMaskSource(MaskSource):
    """Decoder-resolution mask logits, resized to the output on demand."""

    def __init__(self, low: torch.Tensor, padded: HW, resized: HW, output: HW,
                 chunk_bytes: int) -> None:
        self.low, self.padded, self.resized, self.output = low, padded, resized, output
        self.num_queries = low.shape[0]
        self.height, self.width = output
        self.chunk_bytes = chunk_bytes
        self.bands = BandResizer(low, padded, resized, output)

    @property
    def device(self) -> torch.device:
        return self.low.device

    def query_chunk_size(self) -> int:
        per_query = 4 * max(self.padded[0] * self.padded[1], self.height * self.width)
        return max(_MIN_CHUNK_QUERIES, self.chunk_bytes // per_query)

    def queries(self, idx: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        step = self.query_chunk_size()
        for s in range(0, idx.numel(), step):
            chunk = self.low.index_select(0, idx[s:s + step].to(self.low.device))
            yield s, mask_logits_to_image(chunk, self.padded, self.resized, self.output)

    def rows(self, r0: int, r1: int) -> torch.Tensor:
        return self.bands.rows(r0, r1)


def mask_source(low: torch.Tensor, padded: HW, resized: HW, output: HW,
                chunk_bytes: int) -> MaskSource:
    """Resize everything once (exactly) when it fits in ``chunk_bytes``, else on demand."""
    full_bytes = 4 * low.shape[0] * max(padded[0] * padded[1], output[0] * output[1])
    if full_bytes <= chunk_bytes:
        return MaskSource(mask_logits_to_image(low, padded, resized, output), chunk_bytes)
    return LowResMaskSource(low, padded, resized, output, chunk_bytes)


def row_bands(height: int, rows_per_band: int) -> Iterator[tuple[int, int]]:
    """Consecutive [r0, r1) bands covering ``height`` rows."""
    for r0 in range(0, height, rows_per_band):
        yield r0, min(height, r0 + rows_per_band)


class QueryVisitor:
    """Consumes full-resolution masks of a sorted subset of queries, chunk by chunk."""

    queries: torch.Tensor  # sorted query indices this visitor needs (CPU int64)
    needs_binary = False  # whether visit() reads ``binary``

    def visit(self, rows: torch.Tensor, pos: torch.Tensor, binary: torch.Tensor | None,
              sig: torch.Tensor) -> None:
        """Chunk rows ``rows`` (ascending) are this visitor's queries at positions ``pos``.

        ``rows`` and ``pos`` are on the device of ``sig``. ``sig`` [m, H, W] is the sigmoid of
        the chunk's mask logits and ``binary`` their sign (logit > 0), both for all m rows of
        the chunk: visitors read their rows in place instead of copying them out.
        """
        raise NotImplementedError


def score_queries(source: MaskSource, visitors: list[QueryVisitor]) -> None:
    """Upsample every query any visitor needs exactly once, in ascending query order."""
    visitors = [v for v in visitors if v.queries.numel() > 0]
    if not visitors:
        return
    wanted = torch.unique(torch.cat([v.queries for v in visitors]))  # sorted, on the host
    lookups = []
    for v in visitors:
        lut = torch.full((source.num_queries,), -1, dtype=torch.int64)
        lut[v.queries] = torch.arange(v.queries.numel())
        lookups.append(lut)
    dev = source.device
    for s, logits in source.queries(wanted):
        chunk = wanted[s:s + logits.shape[0]]
        members = []
        for v, lut in zip(visitors, lookups):  # host-side bookkeeping: no device sync
            pos = lut[chunk]
            rows = (pos >= 0).nonzero().flatten()
            if rows.numel():
                members.append((v, rows.to(dev), pos[rows].to(dev)))
        binary = logits > 0 if any(v.needs_binary for v, _, _ in members) else None
        sig = logits.sigmoid_() if source.owns_chunks else logits.sigmoid()
        del logits
        for v, rows, pos in members:
            v.visit(rows, pos, binary, sig)


def count_true(mask: torch.Tensor) -> torch.Tensor:
    """Per-row count of a [m, H, W] bool tensor (an int32 byte sum is several times faster)."""
    return mask.view(torch.uint8).flatten(1).sum(1, dtype=torch.int32)
