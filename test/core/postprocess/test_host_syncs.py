"""Post-processing talks to the host a fixed number of times per frame, never once per query.

On a GPU each ``.cpu()``, ``.item()``, ``.tolist()`` or ``.numpy()`` of a device tensor waits
for the device. The CPU cannot tell a sync from a no-op, so the test counts the calls: with
five times more queries kept (by panoptic and instance inference alike) the count must not
change.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fcclip_core.postprocess import PostprocessConfig, postprocess

HOST_CALLS = ("cpu", "item", "tolist", "numpy")
PADDED = (96, 128)
OUTPUT = (96, 128)  # no padding: every stripe is inside the image


def inputs(kept: int, queries: int = 60, classes: int = 5):
    """``kept`` queries predict a thing class with high probability and own a stripe of the
    image; the others are void."""
    g = torch.Generator().manual_seed(kept)
    width = PADDED[1] // 4
    low = torch.full((queries, PADDED[0] // 4, width), -6.0)
    for i in range(kept):  # kept query i owns a vertical stripe: one segment each
        low[i, :, i * width // kept:(i + 1) * width // kept] = 6.0
    low += torch.randn(low.shape, generator=g)
    logits = torch.full((queries, classes + 1), -8.0)
    logits[:, -1] = 8.0
    logits[:kept, -1] = -8.0
    logits[:kept, 0] = 8.0
    logits[:kept, 1:3] += torch.rand(kept, 2, generator=g)  # distinct (query, class) scores
    logprobs = torch.log(F.softmax(logits, -1) + 1e-8)
    return logprobs, low, [True] * classes, [f"c{i}" for i in range(classes)]


def count_host_calls(monkeypatch, kept: int, chunk_bytes: int = 1 << 30) -> tuple[int, int, int]:
    counts = {name: 0 for name in HOST_CALLS}
    for name in HOST_CALLS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counted)
    logprobs, low, things, labels = inputs(kept)
    # instance candidates grow with the kept queries
    cfg = PostprocessConfig(chunk_bytes=chunk_bytes, topk_per_image=3 * kept)
    _, pan, inst = postprocess(logprobs, low, PADDED, OUTPUT, OUTPUT, things, labels, cfg)
    monkeypatch.undo()
    return sum(counts.values()), len(pan.segments), len(set(inst.query_indices.tolist()))


def test_host_calls_do_not_grow_with_the_number_of_queries(monkeypatch):
    few, few_segments, few_instances = count_host_calls(monkeypatch, 4)
    many, many_segments, many_instances = count_host_calls(monkeypatch, 16)
    # the inputs really make both tasks visit more queries
    assert (few_instances, many_instances) == (4, 16)
    assert (few_segments, many_segments) == (4, 16)
    assert few == many, f"{few} host calls with 4 kept queries, {many} with 16"


def test_host_calls_do_not_grow_with_the_number_of_chunks(monkeypatch):
    """Semantic bands and query chunks stay on the device too."""
    one_chunk, _, _ = count_host_calls(monkeypatch, 16)
    many_chunks, _, _ = count_host_calls(monkeypatch, 16, chunk_bytes=4 * 96 * 128 * 4)
    assert one_chunk == many_chunks, f"{one_chunk} host calls in one chunk, {many_chunks} in many"
