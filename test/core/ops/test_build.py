"""The native extension: what the install built, and rebuilds from build_spec.

The install (scripts/setup_env.sh -> setup.py) compiles the kernels, CUDA included wherever nvcc
and a CUDA build of torch exist, and fails when a kernel does not compile: that is CI's compile
check. The first test makes sure the install did not quietly leave the CUDA kernels out.

The rebuild tests compile the extension again from build_spec, CPU-only and with CUDA, the way
setup.py and the JIT route do. They take minutes and repeat what the install already proved, so
they run when FCCLIP_TEST_REBUILD_OPS=1 (set it when changing build_spec or the build routes).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fcclip_core.ops import build_spec
from fcclip_core.ops.build import build_extension

REPO_ROOT = Path(__file__).resolve().parents[3]

rebuild = pytest.mark.skipif(os.environ.get("FCCLIP_TEST_REBUILD_OPS") != "1",
                             reason="rebuilds the extension (minutes); set FCCLIP_TEST_REBUILD_OPS=1")

# Enough to prove the kernels compile for old and new GPUs without the full install list's cost.
COMPILE_CHECK_ARCH_LIST = "7.5;9.0+PTX"


@pytest.fixture(scope="session")
def build_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fcclip_ops_build")


# Run in a fresh interpreter: CPython caches extension modules by name, so a second library also
# called fcclip_core.ops._C could not be imported into this process.
PROBE = """
import importlib.util, json, sys, torch
sys.path.insert(0, {tests!r})
from conftest import make_problem
from fcclip_core.ops import ms_deform_attn_reference
spec = importlib.util.spec_from_file_location({name!r}, {library!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
args = make_problem([(3, 5), (1, 1), (7, 2)], n=2, queries=6)
diff = (module.ms_deform_attn_forward(*args) - ms_deform_attn_reference(*args)).abs().max().item()
print(json.dumps({{"has_cuda": module.has_cuda(), "max_diff": diff}}))
"""


def probe_library(library: Path) -> dict:
    """Import a built library in a subprocess; its CUDA flag and its CPU forward error vs the reference."""
    code = PROBE.format(tests=str(Path(__file__).parent), name=build_spec.EXTENSION_NAME, library=str(library))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_installed_extension_has_the_kernels_this_machine_can_build():
    import importlib

    import fcclip_core

    try:
        module = importlib.import_module(build_spec.EXTENSION_NAME)
    except ImportError:
        if "site-packages" not in fcclip_core.__file__:
            pytest.skip("running from a checkout without an in-place build (python -m fcclip_core.ops.build --inplace)")
        raise AssertionError("the installed package has no native extension (fcclip_core.ops._C)")
    assert module.has_cuda() == build_spec.cuda_build_requested(), (
        "the install built the extension without the CUDA kernels although nvcc and a CUDA torch are present"
        if build_spec.cuda_build_requested() else "CUDA kernels were built although no CUDA build was requested")


@pytest.mark.slow
@rebuild
def test_cpu_build_from_spec(build_root):
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler")
    library = build_extension(with_cuda=False, build_dir=build_root / "cpu")
    probe = probe_library(library)
    assert not probe["has_cuda"]
    assert probe["max_diff"] < 1e-5


@pytest.mark.slow
@rebuild
def test_cuda_kernels_compile(build_root, monkeypatch):
    if not build_spec.nvcc_available():
        pytest.skip("nvcc (CUDA toolkit) not found")
    if torch.version.cuda is None:
        pytest.skip("torch is a CPU-only build")
    if not torch.cuda.is_available():
        monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", os.environ.get("TORCH_CUDA_ARCH_LIST") or COMPILE_CHECK_ARCH_LIST)
    library = build_extension(with_cuda=True, build_dir=build_root / "cuda")
    probe = probe_library(library)
    assert probe["has_cuda"]
    assert probe["max_diff"] < 1e-5  # the CPU kernels of the CUDA build


def test_default_arch_list_is_accepted_by_nvcc():
    if not build_spec.nvcc_available():
        pytest.skip("nvcc (CUDA toolkit) not found")
    nvcc = Path(build_spec.cuda_toolkit_root()) / "bin" / "nvcc"
    known = subprocess.run([str(nvcc), "--list-gpu-arch"], capture_output=True, text=True, check=True).stdout.split()
    for arch in build_spec.DEFAULT_CUDA_ARCH_LIST.split(";"):
        number = arch.replace("+PTX", "").replace(".", "")
        assert f"compute_{number}" in known, f"nvcc does not know {arch}"
