"""Time and peak memory of FC-CLIP post-processing: official-formula chain vs ``postprocess``.

    python -m fcclip_core.tools.bench_postprocess [--queries 250] [--classes 10 133]
        [--sizes 640x640 800x1333] [--repeats 2] [--threads N]

Inputs are random but shaped like the released model's: Q queries whose mask logits at 1/4 of
the padded input are smooth blobs of +-15 logits, most queries predicting "void". The
"official" column runs the reference chain on full tensors (resize all queries to the output
size, semantic einsum over [K, H, W], the per-query panoptic loop, instance inference on the
top-k masks); "lean" runs ``postprocess`` with all three tasks on. Peak extra memory is the
process's peak resident set size (VmHWM, reset through /proc/self/clear_refs) minus the
resident size before the call, so it includes torch's allocations, which tracemalloc misses.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from fcclip_core.postprocess import PostprocessConfig, mask_logits_to_image, postprocess
from fcclip_core.tools.reference_postprocess import (reference_instance_inference,
                                                     reference_panoptic_inference,
                                                     reference_semantic_inference)


@dataclass
class Case:
    queries: int
    classes: int
    output_hw: tuple[int, int]

    @property
    def padded_hw(self) -> tuple[int, int]:
        return tuple(int(math.ceil(v / 32) * 32) for v in self.output_hw)  # type: ignore


def make_inputs(case: Case, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
    """(class log-probs [Q, K+1], low-res mask logits [Q, Hp/4, Wp/4], thing mask [K])."""
    g = torch.Generator().manual_seed(seed)
    q, k = case.queries, case.classes
    hp, wp = case.padded_hw
    h4, w4 = hp // 4, wp // 4
    # smooth blobs: a coarse random field upsampled, shifted so each query covers ~5-30 %
    coarse = torch.randn(1, q, max(2, h4 // 16), max(2, w4 // 16), generator=g)
    field = F.interpolate(coarse, size=(h4, w4), mode="bicubic", align_corners=False)[0]
    offset = torch.empty(q, 1, 1).uniform_(-1.5, -0.3, generator=g)
    masks = 10.0 * (field + offset)
    logits = torch.randn(q, k + 1, generator=g) * 2.0
    void_queries = torch.rand(q, generator=g) < 0.7
    logits[void_queries, -1] += 6.0
    logits[~void_queries, torch.randint(0, k, (int((~void_queries).sum()),), generator=g)] += 5.0
    logprobs = torch.log(F.softmax(logits, -1) + 1e-8)
    things = (torch.arange(k) % 3 != 0).tolist()
    return logprobs, masks, things


def official_chain(logprobs: torch.Tensor, low: torch.Tensor, case: Case, things: list[bool]):
    full = mask_logits_to_image(low, case.padded_hw, case.output_hw, case.output_hw)
    sem = reference_semantic_inference(logprobs, full)
    pan = reference_panoptic_inference(logprobs, full, things)
    ins = reference_instance_inference(logprobs, full, things, 100)
    return sem, pan, ins


def lean_chain(logprobs: torch.Tensor, low: torch.Tensor, case: Case, things: list[bool]):
    labels = [f"class{i}" for i in range(case.classes)]
    return postprocess(logprobs, low, case.padded_hw, case.output_hw, case.output_hw, things,
                       labels, PostprocessConfig())


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(fn: Callable[[], object], repeats: int) -> dict:
    """Best wall and process CPU time (s) and peak extra resident memory (MiB) over the runs.

    CPU time is printed too because wall time on a shared machine swings with its load.
    """
    wall, cpu, peak = math.inf, math.inf, 0.0
    for _ in range(repeats):
        base = _status_kib("VmRSS")
        if not _reset_peak():
            raise RuntimeError("cannot reset VmHWM (/proc/self/clear_refs not writable)")
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
        peak = max(peak, (_status_kib("VmHWM") - base) / 1024)
        del out
    return {"seconds": wall, "cpu": cpu, "mib": peak}


def _worker(path: str, case: Case, repeats: int) -> dict:
    logprobs, low, things = make_inputs(case)
    chain = official_chain if path == "official" else lean_chain
    return measure(lambda: chain(logprobs, low, case, things), repeats)


def _run_isolated(path: str, case: Case, repeats: int, threads: int) -> dict:
    """One measurement in a fresh interpreter, so no heap kept from earlier runs hides memory."""
    cmd = [sys.executable, "-m", "fcclip_core.tools.bench_postprocess", "--worker", path,
           "--queries", str(case.queries), "--classes", str(case.classes),
           "--sizes", "x".join(map(str, case.output_hw)), "--repeats", str(repeats),
           "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=250)
    ap.add_argument("--classes", type=int, nargs="+", default=[10, 133])
    ap.add_argument("--sizes", nargs="+", default=["640x640", "800x1333"],
                    help="output sizes HxW")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (best)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--skip-official", action="store_true")
    ap.add_argument("--worker", choices=["official", "lean"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = [Case(args.queries, k, tuple(int(v) for v in size.lower().split("x")))
             for size in args.sizes for k in args.classes]
    if args.worker:
        print(json.dumps(_worker(args.worker, cases[0], args.repeats)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, Q={args.queries}, "
          f"best of {args.repeats}; memory = peak RSS - RSS before, fresh process each")
    print(f"{'output':>10} {'K':>4} | {'official: wall s':>16} {'cpu s':>6} {'MiB':>6} | "
          f"{'lean: wall s':>12} {'cpu s':>6} {'MiB':>6}")
    row = "{seconds:16.2f} {cpu:6.2f} {mib:6.0f}"
    for case in cases:
        lean = _run_isolated("lean", case, args.repeats, args.threads)
        off = (f"{'-':>16} {'-':>6} {'-':>6}" if args.skip_official else
               row.format(**_run_isolated("official", case, args.repeats, args.threads)))
        size = "x".join(map(str, case.output_hw))
        print(f"{size:>10} {case.classes:>4} | {off} | {row.format(**lean)[4:]}", flush=True)


if __name__ == "__main__":
    main()
