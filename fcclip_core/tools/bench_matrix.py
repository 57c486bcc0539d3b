"""Latency matrix on one device, in one process: models x input shapes x precisions.

    python -m fcclip_core.tools.bench_matrix --device cuda [--models convnext_large rn50]
        [--sizes 512 640 800 1024] [--precisions fp32 bf16 fp16] [--runs 10] [--json out.json]

Each model is built once (generated weights, as ``bench``) and shared by the precisions. Per
model, shape and precision: the median end-to-end latency of batch-1 ``Predictor.predict``
(preprocessing, network, post-processing; the vocabulary already encoded) with its stages,
and on CUDA the peak GPU memory of those runs. Shapes are square (size x size) and 4:3
landscape (size*3/4 x size). Per model also the time to encode the COCO vocabulary (133
classes) the first time and when cached. On CUDA every stage reading waits for the GPU.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image

from fcclip_core.compilation import COMPILE_MODES, compile_network
from fcclip_core.precision import PRECISIONS
from fcclip_core.tools.bench import StageClock, test_image, weights_file

STAGES = ("preprocess", "backbone", "pixel_decoder", "decoder", "out_of_vocabulary", "postprocess")
DEFAULT_WORK_DIR = Path.home() / ".cache" / "fcclip_ros" / "bench"


def shapes(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """(height, width): square and 4:3 landscape per size."""
    return [shape for size in sizes for shape in ((size, size), (size * 3 // 4, size))]


def shaped_image(height: int, width: int) -> np.ndarray:
    """The benchmark photo resized to height x width."""
    base = test_image(max(height, width))
    return np.asarray(Image.fromarray(base).resize((width, height), Image.BILINEAR))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def encode_coco(predictor) -> dict:
    """Seconds to encode the COCO panoptic vocabulary the first time and when cached."""
    from fcclip_core.vocabulary import coco_panoptic_vocabulary

    vocabulary = coco_panoptic_vocabulary()
    times = []
    for _ in range(2):
        start = time.perf_counter()
        predictor.set_vocabulary(vocabulary)
        _sync(predictor.device)
        times.append(time.perf_counter() - start)
    return {"classes": len(vocabulary.labels), "new_s": times[0], "cached_s": times[1]}


def measure(predictor, image: np.ndarray, runs: int, warmup: int = 2) -> dict:
    """Median stage and end-to-end seconds of ``runs`` predictions after ``warmup`` ones."""
    device = predictor.device
    clock = StageClock(sync=lambda: _sync(device))
    for _ in range(warmup):
        predictor.predict(image)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    records = []
    clock.instrument(predictor.model)
    try:
        for _ in range(runs):
            clock.seconds = {}
            result = predictor.predict(image)
            stages = dict(clock.seconds)
            stages["out_of_vocabulary"] = result.timings["network"] - sum(stages.values())
            for name in ("preprocess", "postprocess", "total"):
                stages[name] = result.timings[name]
            records.append(stages)
    finally:
        clock.uninstrument()
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"median_s": {k: statistics.median(r[k] for r in records) for k in records[0]},
            "all_total_s": [r["total"] for r in records], "peak_gpu_mib": peak,
            "segments": len(result.panoptic.segments) if result.panoptic else 0}


def run_model(model: str, device: str, sizes: Sequence[int], precisions: Sequence[str], runs: int,
              work_dir: Path, compile_mode: str = "off") -> dict:
    """Every shape and precision of one model, plus its COCO vocabulary encoding time."""
    from fcclip_core.predictor import Predictor

    weights, origin = weights_file(work_dir, model)
    base = Predictor.from_config(model, weights, device=device, input_short_side=0)
    if compile_mode != "off":
        compile_network(base.model, compile_mode)  # shared by every precision; recompiles per shape
    out: dict = {"model": model, "weights": origin, "device": str(base.device), "compile": compile_mode,
                 "vocabulary": encode_coco(base), "cases": []}
    for height, width in shapes(sizes):
        image = shaped_image(height, width)
        for precision in precisions:
            predictor = Predictor(base.model, input_short_side=0, text_cache=base.text_cache,
                                  precision=precision, tf32=base.tf32)
            predictor.set_vocabulary(base.vocabulary)
            row = measure(predictor, image, runs)
            row.update({"height": height, "width": width, "precision": predictor.precision.name})
            out["cases"].append(row)
    return out


def format_table(results: Sequence[dict]) -> str:
    """One line per model, shape and precision: stage medians in ms, end to end, peak memory."""
    head = (f"{'model':<15} {'shape':>10} {'prec':>4} " + " ".join(f"{s[:10]:>10}" for s in STAGES)
            + f" {'total ms':>9} {'peak MiB':>9}")
    lines = [head]
    for model in results:
        for case in model["cases"]:
            m = case["median_s"]
            peak = "-" if case["peak_gpu_mib"] is None else f"{case['peak_gpu_mib']:.0f}"
            lines.append(f"{model['model']:<15} {case['height']:>4}x{case['width']:<5} {case['precision']:>4} "
                         + " ".join(f"{1000 * m[s]:>10.1f}" for s in STAGES)
                         + f" {1000 * m['total']:>9.1f} {peak:>9}")
        v = model["vocabulary"]
        lines.append(f"{'':<15} COCO vocabulary ({v['classes']} classes): new {v['new_s']:.2f} s, "
                     f"cached {1000 * v['cached_s']:.1f} ms; weights: {model['weights']}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--models", nargs="+", default=["convnext_large", "rn50"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 640, 800, 1024])
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=["fp32", "bf16", "fp16"])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--compile", default="off", choices=COMPILE_MODES,
                        help="torch.compile the network (the warm-up runs absorb the compilation)")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="generated weights files")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.runs < 1 or min(args.sizes) < 32:
        parser.error("--runs must be >= 1 and every size >= 32")
    results = [run_model(m, args.device, args.sizes, args.precisions, args.runs, args.work_dir, args.compile)
               for m in args.models]
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
