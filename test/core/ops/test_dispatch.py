"""Which path the entry point takes, how it says so, and how it rejects bad input."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fcclip_core.ops import active_backend, ms_deform_attn, ms_deform_attn_reference
from fcclip_core.ops import extension
from fcclip_core.ops.dispatch import BACKEND_ENV, check_levels_fit

REPO_ROOT = Path(__file__).resolve().parents[3]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=environment, capture_output=True,
                          text=True, timeout=600)


def test_forced_reference_path(problem, monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "reference")
    assert active_backend("cpu") == "reference"
    assert active_backend("cuda") == "reference"
    args = problem([(3, 5), (2, 2)])
    torch.testing.assert_close(ms_deform_attn(*args), ms_deform_attn_reference(*args), rtol=0, atol=0)


def test_unknown_backend_choice_is_an_error(monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "fastest")
    with pytest.raises(ValueError, match="auto, native, reference"):
        active_backend("cpu")


def test_cuda_tensors_need_a_cuda_build(native_cpu):
    expected = "cuda" if extension.native_ops().has_cuda else "reference"
    assert active_backend("cuda") == expected


def test_forcing_native_without_cuda_kernels_fails(native_cpu, monkeypatch):
    if extension.native_ops().has_cuda:
        pytest.skip("this build has CUDA kernels")
    monkeypatch.setenv(BACKEND_ENV, "native")
    assert active_backend("cpu") == "cpu-native"
    with pytest.raises(RuntimeError, match="no native op serves cuda"):
        active_backend("cuda")


def test_active_path_is_logged_once_per_device():
    code = (
        "import logging, torch; logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "from fcclip_core.ops import active_backend\n"
        "for _ in range(3): active_backend('cpu')\n"
        "print('BACKEND', active_backend(torch.device('cpu')))\n"
    )
    result = run_python(code, **{BACKEND_ENV: "reference"})
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "multi-scale deformable attention" in line]
    assert len(lines) == 1 and "reference path" in lines[0]
    assert "BACKEND reference" in result.stdout


def test_failed_jit_build_falls_back_with_one_warning(monkeypatch, caplog):
    def no_installed_module(name):
        raise ImportError(f"No module named {name!r}")

    def broken_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension 'fcclip_msda_cpu'\nc++: fatal error")

    monkeypatch.setattr(extension.importlib, "import_module", no_installed_module)
    monkeypatch.setattr(extension, "_missing_build_tools", lambda: "")
    monkeypatch.setattr(extension, "jit_compile", broken_compiler)
    with caplog.at_level(logging.WARNING, logger="fcclip_core.ops"):
        loaded = extension._load()
    assert loaded.module is None and not loaded.has_cuda
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "c++: fatal error" in warnings[0].getMessage()


def test_missing_compiler_means_reference(monkeypatch):
    monkeypatch.setattr(extension.importlib, "import_module", lambda name: (_ for _ in ()).throw(ImportError(name)))
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    loaded = extension._load()
    assert loaded.module is None and "no C++ compiler" in loaded.origin


def test_mixed_float_dtypes_compute_in_the_promoted_dtype(problem):
    value, shapes, starts, locations, weights = problem([(3, 5), (2, 2)], dtype=torch.float64)
    out = ms_deform_attn(value.float(), shapes, starts, locations, weights.float())
    assert out.dtype == torch.float64
    expected = ms_deform_attn_reference(value.float().double(), shapes, starts, locations, weights.float().double())
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_jit_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FCCLIP_CACHE_DIR", str(tmp_path))
    assert extension.jit_build_dir("x") == tmp_path / "torch_extensions" / torch.__version__ / "x"


@pytest.mark.parametrize(
    "mutate, error, message",
    [
        (lambda a: (a[0][0],) + a[1:], ValueError, r"value must be \[N, S, M, D\]"),
        (lambda a: a[:3] + (a[3][..., :1],) + a[4:], ValueError, "sampling_locations must be"),
        (lambda a: a[:4] + (a[4][:, :2],), ValueError, "attention_weights must be"),
        (lambda a: (a[0], a[1][:1]) + a[2:], ValueError, "spatial_shapes must be"),
        (lambda a: (a[0], a[1].float()) + a[2:], TypeError, "spatial_shapes must be an integer tensor"),
        (lambda a: a[:4] + (a[4].long(),), TypeError, "attention_weights must be floating point"),
        (lambda a: (a[0].long(),) + a[1:], TypeError, "value must be floating point"),
    ],
    ids=["value-dims", "locations-shape", "weights-shape", "levels-count", "float-shapes", "int-weights", "int-value"],
)
def test_bad_inputs_get_clear_errors(problem, mutate, error, message):
    args = problem([(3, 5), (2, 2)])
    with pytest.raises(error, match=message):
        ms_deform_attn(*mutate(args))


def test_level_table_check_used_before_gpu_launches():
    shapes = torch.tensor([[3, 4], [2, 2]])
    check_levels_fit(shapes, torch.tensor([0, 12]), 16)
    with pytest.raises(ValueError, match="level 1 .2x2 from pixel 13. does not fit"):
        check_levels_fit(shapes, torch.tensor([0, 13]), 16)
    with pytest.raises(ValueError, match="level 0"):
        check_levels_fit(torch.tensor([[-1, 4]]), torch.tensor([0]), 16)
