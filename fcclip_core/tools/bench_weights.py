"""Benchmark: model build + weight loading from the released-style .pth vs the exported safetensors.

    python -m fcclip_core.tools.bench_weights [--repeats 3] [--work-dir DIR] [--keep]

Generates the full-size ConvNeXt-L weights with the reference generator (shared/reference/large/
gen_weights.py, seed 0), writes them as the released files are (a detectron2 ``.pth`` without the
CLIP text tower, plus open_clip-layout CLIP weights as ``open_clip_model.safetensors``), exports
the single file, then measures each way of loading in fresh processes:

- ``pth, read into memory``: ``torch.load`` of the checkpoint (the usual way) + CLIP weights
- ``pth, memory-mapped``: ``load_weights_into`` on the same two files (``torch.load(mmap=True)``)
- ``export, memory-mapped``: ``load_weights_into`` on the exported ``.safetensors``

Time = build the model (parameters on the meta device), then load + ``prepare_for_inference``,
after the imports; wall time, and the process's CPU time (less sensitive to other load on the
machine). Peak RSS = VmHWM of the process (imports included; their share is printed). The
files were just written, so all runs read from the page cache (a warm start); a cold start from
disk adds the disk read to the .pth cases and only the touched pages to the export.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = "convnext_large"
FILE_NAMES = ("fcclip_cocopan.pth", "open_clip_model.safetensors", "export.safetensors")
MODES = {
    "pth-read": "pth, read into memory",
    "pth-mmap": "pth, memory-mapped",
    "export": "export, memory-mapped",
}


def _proc_status() -> dict[str, int]:
    """Memory figures of this process in MiB (Linux /proc)."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            values[name] = int(rest.split()[0]) // 1024
    return values


def measure(mode: str, checkpoint: Path, clip: Path, export: Path) -> dict:
    """One measurement, in this (fresh) process."""
    start = time.perf_counter()
    import torch

    from fcclip_core.checkpoint import load_checkpoint
    from fcclip_core.modeling.build import build_empty_model
    from fcclip_core.weights import ResolvedWeights, load_weights_into
    from fcclip_core.weights.files import read_tensors
    from fcclip_core.weights.verify import with_clip_prefix

    imports_s = time.perf_counter() - start
    after_imports = _proc_status()
    start, cpu_start = time.perf_counter(), time.process_time()
    model = build_empty_model(CONFIG)
    build_s = time.perf_counter() - start
    if mode == "pth-read":
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
        load_checkpoint(model, state, with_clip_prefix(read_tensors(clip)), config_name=CONFIG)
        del state
    elif mode == "pth-mmap":
        load_weights_into(model, ResolvedWeights(CONFIG, CONFIG, checkpoint, clip))
    else:
        load_weights_into(model, ResolvedWeights(CONFIG, CONFIG, export, None, exported=True))
    model.prepare_for_inference()
    total_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    after_load = _proc_status()
    with torch.no_grad():  # after the measurement: the same weights every way?
        checksum = sum(float(t.double().sum()) for t in model.state_dict().values())
    return {"mode": mode, "imports_s": imports_s, "build_s": build_s, "load_s": total_s - build_s, "total_s": total_s,
            "cpu_s": cpu_s, "rss_after_imports_mib": after_imports["VmRSS"],
            "peak_rss_mib": after_load["VmHWM"], "anon_after_load_mib": after_load["RssAnon"],
            "file_after_load_mib": after_load["RssFile"], "checksum": checksum}


def prepare_files(work: Path, reference: Path) -> tuple[Path, Path, Path, dict[str, float]]:
    """Generate the weights (seed 0), write the released-style pair and the export."""
    import importlib.util

    import torch
    from safetensors.torch import save_file

    from fcclip_core.checkpoint import CLIP_PREFIX
    from fcclip_core.weights.export import export_weights

    timings = {}
    spec = importlib.util.spec_from_file_location("gen_weights", reference / "large" / "gen_weights.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    start = time.perf_counter()
    manifest = json.loads((reference / "manifest_convnext_large.json").read_text())
    arrays = gen.generate(manifest, 0)
    timings["generate_s"] = time.perf_counter() - start
    state = {k: torch.from_numpy(v) for k, v in arrays.items()}
    text_tower = tuple(CLIP_PREFIX + p for p in ("token_embedding.", "ln_final.", "transformer.resblocks."))
    checkpoint, clip, export = (work / name for name in FILE_NAMES)
    start = time.perf_counter()
    torch.save({"model": {k: v for k, v in state.items() if not k.startswith(text_tower)}}, checkpoint)
    save_file({k[len(CLIP_PREFIX):]: v for k, v in state.items() if k.startswith(CLIP_PREFIX)}, str(clip))
    timings["write_pair_s"] = time.perf_counter() - start
    del state, arrays
    start = time.perf_counter()
    export_weights(CONFIG, checkpoint, clip, export, model_name=CONFIG)
    timings["export_s"] = time.perf_counter() - start
    return checkpoint, clip, export, timings


def _run_child(mode: str, checkpoint: Path, clip: Path, export: Path) -> dict:
    cmd = [sys.executable, "-m", "fcclip_core.tools.bench_weights", "--measure", mode,
           "--checkpoint", str(checkpoint), "--clip", str(clip), "--export", str(export)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"measurement {mode} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _default_reference() -> Path:
    root = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("FCCLIP_REFERENCE_DIR", str(root.parent / "shared" / "reference")))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per mode (median reported)")
    parser.add_argument("--work-dir", help="where the generated files go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the generated files (and reuse those a kept --work-dir already has)")
    parser.add_argument("--reference", type=Path, default=_default_reference(), help="shared/reference directory")
    parser.add_argument("--measure", choices=sorted(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--clip", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--export", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.checkpoint, args.clip, args.export)))
        return 0

    if not (args.reference / "large" / "gen_weights.py").is_file():
        parser.error(f"no reference generator under {args.reference} (set --reference or FCCLIP_REFERENCE_DIR)")
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="fcclip_bench_weights_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        files = [work / name for name in FILE_NAMES]
        if args.keep and all(p.is_file() for p in files):
            checkpoint, clip, export = files
            print(f"ConvNeXt-L, generated weights (seed 0) kept from an earlier run in {work}")
        else:
            checkpoint, clip, export, timings = prepare_files(work, args.reference)
            print(f"ConvNeXt-L, generated weights (seed 0): generate {timings['generate_s']:.1f} s, write .pth + "
                  f"CLIP {timings['write_pair_s']:.1f} s, export {timings['export_s']:.1f} s")
        sizes = {p.name: p.stat().st_size / 2**20 for p in (checkpoint, clip, export)}
        print("files: " + ", ".join(f"{name} {mib:.0f} MiB" for name, mib in sizes.items()))
        results = {mode: [_run_child(mode, checkpoint, clip, export) for _ in range(args.repeats)] for mode in MODES}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\nmedian of {args.repeats} fresh processes each; {os.cpu_count()} CPU cores; warm page cache; "
          f"load average {os.getloadavg()[0]:.1f}")
    header = (f"{'weights':<24} {'build s':>8} {'load s':>7} {'total s':>8} {'CPU s':>6} {'peak RSS MiB':>13} "
              f"{'of it imports':>13} {'anon MiB':>9} {'file MiB':>9}")
    print(header)
    print("-" * len(header))
    checksums = set()
    for mode, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k not in ("mode", "checksum")}
        checksums.update(round(r["checksum"], 3) for r in runs)
        print(f"{MODES[mode]:<24} {med['build_s']:>8.2f} {med['load_s']:>7.2f} {med['total_s']:>8.2f} "
              f"{med['cpu_s']:>6.2f} {med['peak_rss_mib']:>13.0f} "
              f"{med['rss_after_imports_mib']:>13.0f} {med['anon_after_load_mib']:>9.0f} {med['file_after_load_mib']:>9.0f}")
    print(f"\nimports (torch, open_clip, timm, model code): {statistics.median(r['imports_s'] for r in results['export']):.1f} s")
    print("same weights in every run: " + ("yes" if len(checksums) == 1 else f"NO ({sorted(checksums)})"))
    return 0 if len(checksums) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
