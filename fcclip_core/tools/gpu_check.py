"""Prove the GPU path on a machine with an NVIDIA GPU, in one command and a few minutes.

    scripts/gpu_check.sh [--wheels DIR] [--device cuda] [--out build/gpu_check/report.json]
    scripts/gpu_check.sh --device cpu --quick     # the same steps on a CPU, small (CI)

Runs from the repository root without installing the package, in order:

1. wheels: every package of ``fcclip_core/data/gpu_check_wheels.txt`` that this Python lacks
   is unpacked from ``--wheels DIR`` (no pip, no network); any not in the folder: stop at once
   with the list and the download command.
2. build: the native op, in place, for the GPU present (``TORCH_CUDA_ARCH_LIST`` = its
   compute capability).
3. tests: the GPU tests (CUDA kernel vs the PyTorch reference, forward, backward, fp16 / bf16,
   fp64 gradcheck, odd shapes, non-contiguous inputs; the full model on CUDA vs the CPU).
4. parity: the official fixtures (tiny, rn_tiny) on the device at fp32 / bf16 / fp16 against
   CPU fp32: fp32 must decide identically with logits within ``FP32_LOGIT_TOLERANCE``;
   agreement and drift are reported for the others.
5. bench: ConvNeXt-L and RN50 at 512 / 640 / 800 / 1024, square and 4:3, fp32 / bf16 / fp16,
   batch 1: median latency per stage, peak GPU memory, COCO vocabulary encoding time.

Everything goes into one JSON report and is printed as tables; the exit status is 0 only when
every step passed. ``--quick`` shrinks steps 4-5 (fixture_tiny at 128, fp32 and bf16, 2 runs)
and skips the build.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
WHEELS_FILE = Path(__file__).resolve().parents[1] / "data" / "gpu_check_wheels.txt"
GPU_TESTS = ("test/core/ops/test_ms_deform_attn_cuda.py", "test/core/test_cuda_pipeline.py",
             "test/core/test_upload.py")
DOWNLOAD_COMMAND = ("pip download --python-version 3.12 --only-binary=:all: --no-deps -d build/gpu_wheels "
                    "-r fcclip_core/data/gpu_check_wheels.txt")
TIME_BUDGET_S = 360


# --------------------------------------------------------------------------- wheels

def required_wheels(path: Path = WHEELS_FILE) -> list[tuple[str, str]]:
    """(name, version) pins of the wheels list."""
    pins = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins.append((name.strip(), version.strip()))
    return pins


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def installed_version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def find_wheels(folder: Path, pins: Sequence[tuple[str, str]]) -> tuple[list[Path], list[str]]:
    """The wheel file of each pin in ``folder``, and the pins that have none."""
    index: dict[tuple[str, str], Path] = {}
    for wheel in sorted(folder.glob("*.whl")) if folder.is_dir() else []:
        parts = wheel.name.split("-")
        index.setdefault((normalized(parts[0]), parts[1]), wheel)
    found, missing = [], []
    for name, version in pins:
        match = index.get((normalized(name), version))
        if match is None:
            missing.append(f"{name}=={version}")
        else:
            found.append(match)
    return found, missing


def unpack_wheels(wheels: Sequence[Path], target: Path) -> None:
    """Make wheels importable without pip: a wheel is a zip of its site-packages content."""
    target.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))


def check_torchvision() -> Optional[str]:
    """A problem when the installed torchvision was built for another torch, else None."""
    import torch

    requires = metadata.requires("torchvision") or []
    pinned = next((r for r in requires if re.match(r"torch\s*\(?==", r)), None)
    if pinned:
        want = re.search(r"==\s*([\w.+]+)", pinned).group(1)  # type: ignore[union-attr]
        have = torch.__version__.split("+")[0]
        if want != have:
            return f"torchvision {metadata.version('torchvision')} needs torch {want}, this is torch {have}"
    return None


def provide_wheels(wheel_dir: Optional[Path], target: Path) -> dict:
    """Step 1: what was present, what was unpacked; raises SystemExit listing missing wheels."""
    pins = required_wheels()
    absent = [(n, v) for n, v in pins if installed_version(n) is None]
    report = {"required": [f"{n}=={v}" for n, v in pins],
              "already_installed": {n: installed_version(n) for n, _ in pins if installed_version(n)},
              "unpacked": []}
    if absent:
        if wheel_dir is None:
            raise SystemExit("gpu_check: missing packages, and no --wheels folder given:\n  "
                             + "\n  ".join(f"{n}=={v}" for n, v in absent)
                             + f"\ndownload them on a machine with internet access:\n  {DOWNLOAD_COMMAND}")
        files, missing = find_wheels(wheel_dir, absent)
        if missing:
            raise SystemExit(f"gpu_check: these wheels are not in {wheel_dir}:\n  " + "\n  ".join(missing)
                             + f"\ndownload them on a machine with internet access:\n  {DOWNLOAD_COMMAND}")
        unpack_wheels(files, target)
        report["unpacked"] = [f.name for f in files]
    problem = check_torchvision()
    if problem:
        raise SystemExit(f"gpu_check: {problem}")
    return report


# --------------------------------------------------------------------------- steps

def machine_info(device: str) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, "device": device, "cpu": cpu_name(),
            "cpu_threads": torch.get_num_threads()}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    compute_capability=f"{props.major}.{props.minor}", driver=nvidia_driver())
    return info


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def nvidia_driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def child_env(extra: Optional[dict] = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def build_native_op(device: str) -> dict:
    """Step 2: the op with CUDA kernels for exactly this GPU, next to fcclip_core/ops/."""
    import torch

    major, minor = torch.cuda.get_device_capability(torch.device(device))
    env = child_env({"TORCH_CUDA_ARCH_LIST": f"{major}.{minor}",
                     "MAX_JOBS": os.environ.get("MAX_JOBS", str(os.cpu_count() or 4))})
    child = subprocess.run([sys.executable, "-m", "fcclip_core.ops.build", "--cuda", "--inplace"],
                           cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if child.returncode != 0:
        raise RuntimeError(f"native op build failed:\n{child.stdout[-3000:]}\n{child.stderr[-3000:]}")
    return {"arch": f"{major}.{minor}", "log": child.stdout.strip().splitlines()[-1:]}


def run_gpu_tests() -> dict:
    """Step 3: pytest on the GPU tests (they skip, visibly, without a GPU)."""
    # ROS launch plugins are of no use here (and may not load under this pytest): keep them out
    child = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                            "-p", "no:launch_testing", "-p", "no:launch_ros", *GPU_TESTS],
                           cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True)
    summary = child.stdout.strip().splitlines()[-1] if child.stdout.strip() else ""
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}
    result = {"exit_code": child.returncode, "summary": summary, "counts": counts}
    if child.returncode != 0:
        raise RuntimeError(f"GPU tests failed ({summary}):\n{child.stdout[-4000:]}")
    return result


def fixture_parity(reference: Path, device: str, fixtures: Sequence[str], precisions: Sequence[str]) -> dict:
    """Step 4: each precision on ``device`` against CPU fp32 on the official fixtures."""
    from fcclip_core.tools.device_parity import FP32_LOGIT_TOLERANCE, as_dicts, compare_on_fixture

    if not (reference / "README.md").is_file():
        return {"skipped": f"official reference data not found at {reference} (--reference)"}
    rows = [row for fixture in fixtures for row in compare_on_fixture(reference, fixture, device, precisions)]
    failures = [r for r in rows if r.precision == "fp32" and not (
        r.identical_discrete and r.max_mask_logit_drift <= FP32_LOGIT_TOLERANCE
        and r.max_logprob_drift <= FP32_LOGIT_TOLERANCE)]
    result = {"fp32_tolerance": FP32_LOGIT_TOLERANCE, "rows": as_dicts(rows)}
    if failures:
        raise StepFailed(result, f"fp32 on {device} differs from the CPU: {as_dicts(failures)}")
    return result


def format_parity(parity: dict) -> str:
    if "rows" not in parity:
        return f"parity: {parity.get('skipped') or parity.get('error')}"
    lines = [f"{'fixture':<8} {'img':>3} {'device':<7} {'prec':>4} {'identical':>9} {'panoptic':>9} "
             f"{'semantic':>9} {'logprob drift':>13} {'mask drift':>10}"]
    for r in parity["rows"]:
        lines.append(f"{r['fixture']:<8} {r['image']:>3} {r['device']:<7} {r['precision']:>4} "
                     f"{str(r['identical_discrete']):>9} {100 * r['panoptic_agreement']:>8.2f}% "
                     f"{100 * r['semantic_agreement']:>8.2f}% {r['max_logprob_drift']:>13.2e} "
                     f"{r['max_mask_logit_drift']:>10.2e}")
    return "\n".join(lines)


class StepFailed(RuntimeError):
    """A step that ran to the end but did not pass; ``result`` is still reported."""

    def __init__(self, result: dict, message: str) -> None:
        super().__init__(message)
        self.result = result


def run_step(report: dict, name: str, step: Callable[[], dict]) -> bool:
    start = time.perf_counter()
    print(f"[gpu_check] {name} ...", flush=True)
    try:
        result, ok = step(), True
    except StepFailed as failure:
        result, ok = {**failure.result, "error": str(failure)}, False
    except Exception as error:  # noqa: BLE001 - reported, and the exit status says it failed
        result, ok = {"error": f"{type(error).__name__}: {error}"}, False
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["passed"] = ok
    report["steps"][name] = result
    print(f"[gpu_check] {name}: {'ok' if ok else 'FAILED'} ({result['seconds']} s)"
          + ("" if ok else f"\n{result['error']}"), flush=True)
    return ok


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--quick", action="store_true", help="small parity and benchmark; no build")
    parser.add_argument("--wheels", type=Path, help="folder with the wheels of gpu_check_wheels.txt")
    parser.add_argument("--reference", type=Path,
                        help="official reference data (default: ./shared/reference, else ../shared/reference)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "gpu_check" / "report.json")
    parser.add_argument("--skip-build", action="store_true", help="use the native op already built")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    os.environ.setdefault("FCCLIP_MSDA_JIT", "0")  # never compile at run time: the build step does
    wheels = provide_wheels(args.wheels, REPO_ROOT / "build" / "gpu_check" / "site")

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here (use --device cpu --quick for the CPU run)")
    from fcclip_core.tools.bench import reference_dir
    from fcclip_core.tools.bench_matrix import format_table, run_model

    reference = args.reference or next(
        (p for p in (REPO_ROOT / "shared" / "reference",) if (p / "README.md").is_file()), reference_dir())
    os.environ.setdefault("FCCLIP_REFERENCE_DIR", str(reference))  # the GPU tests read the same data
    cuda = args.device.startswith("cuda")
    precisions = ["fp32", "bf16"] + (["fp16"] if cuda and not args.quick else [])
    report: dict = {"machine": machine_info(args.device), "wheels": wheels, "quick": args.quick, "steps": {}}
    ok = True
    if cuda and not (args.quick or args.skip_build):
        ok &= run_step(report, "build", lambda: build_native_op(args.device))
    ok &= run_step(report, "tests", run_gpu_tests)
    fixtures = ["tiny"] if args.quick else ["tiny", "rn_tiny"]
    ok &= run_step(report, "parity", lambda: fixture_parity(reference, args.device, fixtures, precisions))
    if args.quick:
        models, sizes, runs = ["fixture_tiny"], [128], 2
    else:
        models, sizes, runs = ["convnext_large", "rn50"], [512, 640, 800, 1024], 10
    work_dir = REPO_ROOT / "build" / "gpu_check" / "weights"
    ok &= run_step(report, "bench", lambda: {"models": [
        run_model(m, args.device, sizes, precisions, runs, work_dir) for m in models]})
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["passed"] = bool(ok)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))

    machine = report["machine"]
    print(f"\nmachine: {machine.get('gpu', machine['cpu'])}, driver {machine.get('driver', '-')}, "
          f"torch {machine['torch']} (CUDA {machine['torch_cuda']}), Python {machine['python']}")
    print(format_parity(report["steps"]["parity"]))
    if "models" in report["steps"]["bench"]:
        print(format_table(report["steps"]["bench"]["models"]))
    over = report["seconds"] > TIME_BUDGET_S
    print(f"\n{'PASSED' if ok else 'FAILED'} in {report['seconds']} s"
          + (f" (over the {TIME_BUDGET_S} s budget)" if over else "") + f"; report: {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
