"""Time multi-scale deformable attention: PyTorch reference vs native CPU op, at the pixel decoder's shapes.

FC-CLIP's pixel decoder runs deformable self-attention over three levels at strides 32, 16 and 8 of
the padded input (size divisibility 32), with 8 heads of 32 channels and 4 points per level, one
query per pixel. Locations follow the model's pattern (each query's reference point plus per-head
offsets of a few pixels) so the memory access pattern is realistic.

    python -m fcclip_core.tools.bench_ops [--sizes 640 1024] [--threads 2] [--repeats 9]

The last line is ``speedup: <reference / native at the first size>``.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch

from fcclip_core.ops import active_backend, ms_deform_attn, ms_deform_attn_reference

STRIDES = (32, 16, 8)  # res5, res4, res3: the order the pixel decoder feeds its encoder
SIZE_DIVISIBILITY = 32
HEADS = 8
HEAD_CHANNELS = 32
POINTS = 4


@dataclass(frozen=True)
class Case:
    short_side: int
    height: int
    width: int

    @property
    def levels(self) -> list[tuple[int, int]]:
        return [(math.ceil(self.height / s), math.ceil(self.width / s)) for s in STRIDES]


def padded(size: int) -> int:
    return math.ceil(size / SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY


def decoder_inputs(case: Case, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """value, spatial_shapes, level_start_index, sampling_locations, attention_weights, as the encoder makes them."""
    gen = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(case.levels, dtype=torch.int64)
    areas = shapes[:, 0] * shapes[:, 1]
    starts = torch.cumsum(areas, 0) - areas
    total = int(areas.sum())
    value = torch.randn(1, total, HEADS, HEAD_CHANNELS, generator=gen)
    # Reference point of every query: its pixel centre, normalised, shared by all levels.
    centres = []
    for h, w in case.levels:
        ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        centres.append(torch.stack([xs.flatten() / w, ys.flatten() / h], dim=-1))
    reference = torch.cat(centres)[None, :, None, None, None, :]  # [1, S, 1, 1, 1, 2]
    # Per-head directions times (point + 1) pixels, as the offset layer is initialised, plus noise.
    angles = torch.arange(HEADS, dtype=torch.float32) * (2 * math.pi / HEADS)
    directions = torch.stack([angles.cos(), angles.sin()], -1)
    directions = directions / directions.abs().max(-1, keepdim=True).values
    pattern = directions[:, None, None, :] * torch.arange(1, POINTS + 1, dtype=torch.float32)[None, None, :, None]
    offsets = pattern[None, None] + torch.randn(1, total, HEADS, len(STRIDES), POINTS, 2, generator=gen)
    level_sizes = shapes.flip(-1).to(torch.float32)[None, None, None, :, None, :]  # (W, H)
    locations = reference + offsets / level_sizes
    weights = torch.randn(1, total, HEADS, len(STRIDES) * POINTS, generator=gen).softmax(-1)
    weights = weights.view(1, total, HEADS, len(STRIDES), POINTS)
    return value, shapes, starts, locations, weights


def median_seconds(fn: Callable[[], torch.Tensor], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 1024], help="input short sides (square inputs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--uniform", action="store_true",
                        help="draw locations uniformly over the maps instead (no locality: worst case for caches)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    backend = active_backend("cpu")
    if backend != "cpu-native":
        print(f"native CPU op unavailable (active path: {backend}); nothing to compare", file=sys.stderr)
        return 1
    pattern = "uniform random" if args.uniform else "reference point + per-head offsets"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, forward under no_grad, "
          f"N=1 M={HEADS} D={HEAD_CHANNELS} P={POINTS}, Lq=S, locations: {pattern}, median of {args.repeats} runs")
    header = f"{'input':>11} {'levels (HxW)':>26} {'S=Lq':>7} {'reference ms':>13} {'native ms':>10} {'ratio':>6} {'max|diff|':>10}"
    print(header)
    ratios = []
    for size in args.sizes:
        case = Case(size, padded(size), padded(size))
        inputs = decoder_inputs(case)
        if args.uniform:
            locations = torch.rand(inputs[3].shape, generator=torch.Generator().manual_seed(1))
            inputs = inputs[:3] + (locations, inputs[4])
        with torch.no_grad():
            ref_s = median_seconds(lambda: ms_deform_attn_reference(*inputs), args.repeats, args.warmup)
            nat_s = median_seconds(lambda: ms_deform_attn(*inputs), args.repeats, args.warmup)
            diff = (ms_deform_attn(*inputs) - ms_deform_attn_reference(*inputs)).abs().max().item()
        ratios.append(ref_s / nat_s)
        levels = ", ".join(f"{h}x{w}" for h, w in case.levels)
        print(f"{case.height:>5}x{case.width:<5} {levels:>26} {inputs[0].shape[1]:>7} {ref_s * 1e3:>13.1f} "
              f"{nat_s * 1e3:>10.1f} {ratios[-1]:>6.2f} {diff:>10.2e}")
    print(f"speedup: {ratios[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
