"""End-to-end benchmark of the released FC-CLIP models on this machine.

    python -m fcclip_core.tools.bench [--models convnext_large rn50] [--sizes 320 640] [--runs 5] [--threads 2]
        [--precisions fp32 bf16]

Each model gets deterministic generated weights (for ConvNeXt-L the official reference's
``large/gen_weights.py`` when the reference data is present, a seeded random init otherwise;
cost does not depend on the weight values), written once to a file in ``--work-dir`` and loaded
from it memory-mapped, as the product loads released weights. Every model and image size runs
in a fresh process, so peak RSS (VmHWM of the whole process: imports, model build, vocabulary
encoding and inference) is per model and size. Printed per model and size: median stage times
(backbone, pixel decoder, transformer decoder, out-of-vocabulary branch with the ensemble,
post-processing), end-to-end median of the runs (text already encoded), and peak RSS; then the
text-encoding cost of a new and of an already-seen vocabulary, for a 10-class and the 133-class
COCO vocabulary. The official implementation on the same kind of machine (reference
timing.json files): ConvNeXt-L 2.96 s at 320x320 and 12.4 s at 640x640, peak RSS 3.9-4.9 GB;
RN50 1.72-2.04 s and 10.3-11.4 s, 1.8 / 3.4 GB.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from fcclip_core.precision import PRECISIONS

REPO_ROOT = Path(__file__).resolve().parents[2]
# The 10-class vocabulary of the official reference fixtures (4 stuff, 6 things).
TEN_CLASSES = ["cat,cats,kitty", "person,people,human", "dog,dogs,puppy", "sky,clouds", "grass,lawn",
               "red panda,lesser panda", "teapot,kettle", "zebra crossing,crosswalk", "laptop computer, laptop",
               "coral reef"]
TEN_CLASSES_STUFF = ["sky", "grass", "zebra crossing", "coral reef"]
# Official end-to-end seconds and peak RSS per model and size (reference timing.json, same machine type).
OFFICIAL = {
    "convnext_large": {320: ("2.96 s", "3.9 GB"), 640: ("12.4 s", "4.7-4.9 GB")},
    "rn50": {320: ("1.72-2.04 s", "1.8 GB"), 640: ("10.3-11.4 s", "3.4 GB")},
}


def reference_dir() -> Path:
    """``$FCCLIP_REFERENCE_DIR``, else ``../shared/reference`` beside the checkout (or the current folder)."""
    if "FCCLIP_REFERENCE_DIR" in os.environ:
        return Path(os.environ["FCCLIP_REFERENCE_DIR"])
    for base in (Path.cwd(), REPO_ROOT):
        candidate = base.parent / "shared" / "reference"
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared" / "reference"


def demo_photo(name: str) -> Path:
    """A bundled demo photo, from the checkout or the installed share/fcclip_ros folder."""
    for root in (REPO_ROOT, Path(sys.prefix) / "share" / "fcclip_ros"):
        if (root / "demo_images" / name).is_file():
            return root / "demo_images" / name
    raise FileNotFoundError(f"demo image {name} not found beside {REPO_ROOT} or in {sys.prefix}/share/fcclip_ros")


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (VmHWM), MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def generated_state_dict(model: str):
    """ConvNeXt-L weights from the official generator, or None (other models, reference absent)."""
    if model != "convnext_large":
        return None
    large = reference_dir() / "large"
    script, manifest = large / "gen_weights.py", reference_dir() / "manifest_convnext_large.json"
    if not (script.is_file() and manifest.is_file()):
        return None
    import torch

    spec = importlib.util.spec_from_file_location("fcclip_gen_weights", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    arrays = module.generate(json.loads(manifest.read_text()), 0)
    return {key: torch.from_numpy(value) for key, value in arrays.items()}


def test_image(size: int) -> np.ndarray:
    """The official benchmark input: the astronaut photo, size x size."""
    from PIL import Image

    npz = reference_dir() / "large" / "input.npz"
    if npz.is_file():
        base = np.load(npz)["input_rgb_uint8"]
    else:
        photo = np.asarray(Image.open(demo_photo("astronaut.jpg")).convert("RGB"))
        base = photo[96:416, 96:416]
    if base.shape[:2] != (size, size):
        base = np.asarray(Image.fromarray(base).resize((size, size), Image.BILINEAR))
    return np.ascontiguousarray(base)


class StageClock:
    """Accumulates wall time of wrapped calls per stage name (one bench process, one thread).

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before each reading, so that on a GPU a stage
    is charged for its kernels rather than for launching them."""

    def __init__(self, sync: Optional[Callable[[], None]] = None) -> None:
        self.seconds: dict[str, float] = {}
        self.sync = sync or (lambda: None)

    def wrap(self, name: str, function: Callable) -> Callable:
        @functools.wraps(function)
        def timed(*args, **kwargs):
            self.sync()
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.sync()
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        return timed

    def instrument(self, model) -> None:
        head = model.sem_seg_head
        self._restore = [(owner, name, owner.__dict__.get(name)) for owner, name in (
            (model.backbone, "extract_features"), (head.pixel_decoder, "forward"), (head.predictor, "forward"))]
        for (owner, name, _), stage in zip(self._restore, ("backbone", "pixel_decoder", "decoder")):
            setattr(owner, name, self.wrap(stage, getattr(owner, name)))

    def uninstrument(self) -> None:
        """Undo ``instrument``: what was there before (a compiled method, or the class's) is back."""
        for owner, name, before in getattr(self, "_restore", []):
            if before is None:
                owner.__dict__.pop(name, None)
            else:
                setattr(owner, name, before)
        self._restore = []


def weights_file(work_dir: Path, model: str) -> tuple[Path, str]:
    """The model's generated weights as a file (written once, then reused), and their origin.

    The product loads weights from a file, memory-mapped (``fcclip-weights``); so does the
    benchmark, so that it measures what a user runs.
    """
    path = work_dir / f"{model}_seed0.safetensors"
    origin_file = path.with_suffix(".origin")
    if not path.is_file():
        import torch
        from safetensors.torch import save_file

        work_dir.mkdir(parents=True, exist_ok=True)
        weights = generated_state_dict(model)
        origin = "official gen_weights.py, seed 0"
        if weights is None:
            from fcclip_core.modeling.build import build_model

            torch.manual_seed(0)
            weights = build_model(model).state_dict()
            origin = "seeded random init"
        partial = path.with_suffix(".part")
        save_file({k: v.contiguous() for k, v in weights.items()}, str(partial))
        partial.rename(path)
        origin_file.write_text(origin)
    return path, origin_file.read_text() if origin_file.is_file() else "generated"


def build_predictor(model: str, threads: int, weights: Path, precision: str = "fp32"):
    import torch

    torch.set_num_threads(threads)
    from fcclip_core.predictor import Predictor

    start = time.perf_counter()
    # The inputs are already at the size under test (the official run used MIN_SIZE_TEST = size).
    predictor = Predictor.from_config(model, weights, device="cpu", input_short_side=0, precision=precision)
    return predictor, {"build_s": time.perf_counter() - start}


def run_size(model: str, size: int, runs: int, threads: int, weights: Path, precision: str = "fp32") -> dict:
    predictor, info = build_predictor(model, threads, weights, precision)
    predictor.set_vocabulary(TEN_CLASSES, stuff=TEN_CLASSES_STUFF)
    image = test_image(size)
    clock = StageClock()
    clock.instrument(predictor.model)
    predictor.predict(image)  # warm-up (allocator, kernels, positional encodings)
    records = []
    for _ in range(runs):
        clock.seconds = {}
        result = predictor.predict(image)
        stages = dict(clock.seconds)
        network = result.timings["network"]
        stages["out_of_vocabulary"] = network - sum(stages.values())
        stages["preprocess"] = result.timings["preprocess"]
        stages["postprocess"] = result.timings["postprocess"]
        stages["total"] = result.timings["total"]
        records.append(stages)
    medians = {key: statistics.median(r[key] for r in records) for key in records[0]}
    return {"size": size, "runs": runs, "precision": predictor.precision.name, "median_s": medians, "all_total_s": [r["total"] for r in records],
            "peak_rss_mib": peak_rss_mib(), "segments": len(result.panoptic.segments),
            "instances": len(result.instances), **info}


def run_text(model: str, threads: int, weights: Path) -> dict:
    """Text-encoding cost of new and cached vocabularies with the model's text tower."""
    from fcclip_core.vocabulary import coco_panoptic_vocabulary, parse_vocabulary

    predictor, _ = build_predictor(model, threads, weights)
    out = {}
    for name, vocabulary in (("10 classes", parse_vocabulary(TEN_CLASSES, stuff=TEN_CLASSES_STUFF)),
                             ("COCO 133 classes", coco_panoptic_vocabulary())):
        prompts = sum(vocabulary.synonym_counts) * 14
        start = time.perf_counter()
        predictor.set_vocabulary(vocabulary)
        new = time.perf_counter() - start
        start = time.perf_counter()
        predictor.set_vocabulary(vocabulary)
        cached = time.perf_counter() - start
        out[name] = {"prompts": prompts, "new_s": new, "cached_s": cached}
    return out


def _worker(argv: list[str]) -> dict:
    child = subprocess.run([sys.executable, "-m", "fcclip_core.tools.bench", "--worker", *argv],
                           capture_output=True, text=True)
    if child.returncode != 0:
        raise SystemExit(f"benchmark worker {argv} failed:\n{child.stderr[-4000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["convnext_large", "rn50"],
                        help="shipped model configs to measure (default: convnext_large rn50)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=["fp32"],
                        help="network precisions to measure (default fp32; see README, Precision)")
    parser.add_argument("--skip-text", action="store_true", help="do not measure text encoding")
    parser.add_argument("--work-dir", type=Path, default=Path.home() / ".cache" / "fcclip_ros" / "bench",
                        help="where the generated weights files are kept between runs (0.5-2.6 GB per model)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--text", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from fcclip_core.config import available_model_configs

    unknown = sorted(set(args.models) - set(available_model_configs()))
    if unknown:
        parser.error(f"unknown model config(s) {unknown}; shipped: {available_model_configs()}")
    if args.worker:
        model = args.models[0]
        weights, _ = weights_file(args.work_dir, model)
        result = (run_text(model, args.threads, weights) if args.text
                  else run_size(model, args.sizes[0], args.runs, args.threads, weights, args.precisions[0]))
        print(json.dumps(result))
        return 0

    from fcclip_core.ops import active_backend

    print(f"FC-CLIP end to end, {args.threads} threads, deformable attention: {active_backend('cpu')}")
    stage_names = ["preprocess", "backbone", "pixel_decoder", "decoder", "out_of_vocabulary", "postprocess"]
    print(f"{'model':<15} {'size':>9} {'prec':>4} " + " ".join(f"{n:>17}" for n in stage_names)
          + f" {'end-to-end':>11} {'peak RSS':>10}   official (time, peak RSS)")
    texts = {}
    for model in args.models:
        _, origin = weights_file(args.work_dir, model)
        common = ["--models", model, "--threads", str(args.threads), "--work-dir", str(args.work_dir)]
        for size, precision in ((z, p) for z in args.sizes for p in args.precisions):
            r = _worker(["--sizes", str(size), "--runs", str(args.runs), "--precisions", precision, *common])
            m = r["median_s"]
            official = OFFICIAL.get(model, {}).get(size)
            official_text = f"{official[0]}, {official[1]}" if official else "-"
            print(f"{model:<15} {size}x{size:<5} {r['precision']:>4} "
                  + " ".join(f"{m[n]:>15.3f} s" for n in stage_names)
                  + f" {m['total']:>9.2f} s {r['peak_rss_mib']:>6.0f} MiB   {official_text}")
            print(f"{'':>25} runs: {', '.join(f'{t:.2f}' for t in r['all_total_s'])} s; weights: {origin}, "
                  f"loaded memory-mapped (build {r['build_s']:.1f} s); {r['segments']} segments, "
                  f"{r['instances']} instances")
        if not args.skip_text:
            texts[model] = _worker(["--text", *common])
    for model, text in texts.items():
        print(f"text encoding, {model}:")
        for name, t in text.items():
            print(f"  {name:<17} {t['prompts']:>5} prompts: new {t['new_s']:7.2f} s, "
                  f"already seen {1000 * t['cached_s']:7.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
