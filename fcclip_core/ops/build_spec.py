"""How the native deformable-attention extension is compiled: one spec for every build route.

setup.py (install time), ``python -m fcclip_core.ops.build`` and the JIT build on first use all
take their sources and flags from here, so the three cannot drift apart. The module imports no
torch at import time and nothing from the package: setup.py loads it as a plain file.
"""
from __future__ import annotations

import os
import platform
import shutil
import sys
from pathlib import Path

OPS_DIR = Path(__file__).resolve().parent
CSRC_DIR = OPS_DIR / "csrc"
EXTENSION_NAME = "fcclip_core.ops._C"
CPU_SOURCES = ("ms_deform_attn_cpu.cpp", "bindings.cpp")
CUDA_SOURCES = ("ms_deform_attn_cuda.cu",)

# Targets compiled when no GPU is visible to choose from (CI, build machines): Turing to Hopper
# as SASS, and Hopper PTX so newer GPUs (Blackwell) JIT-compile it. All are accepted by nvcc 12
# and 13 (CUDA 13 dropped everything below 7.5).
DEFAULT_CUDA_ARCH_LIST = "7.5;8.0;8.6;8.9;9.0+PTX"


def _is_windows() -> bool:
    return sys.platform.startswith("win")


def _openmp_flags() -> list[str]:
    """OpenMP makes at::parallel_for run in parallel inside the extension (ATen's backend is OpenMP).

    GCC on Linux links libgomp.so.1, the same soname torch's wheel ships, so one runtime serves both.
    """
    if _is_windows():
        return ["/openmp"]
    if platform.system() == "Linux":
        return ["-fopenmp"]
    return []  # Apple clang has no -fopenmp; the op then runs on one thread


def cuda_toolkit_root() -> str | None:
    """The CUDA toolkit directory holding ``bin/nvcc`` and ``include/cuda_runtime_api.h``.

    ``CUDA_HOME``/``CUDA_PATH`` win. Otherwise nvcc found on PATH is followed through symlinks and
    wrapper scripts (a ``/usr/local/bin/nvcc`` wrapper would make torch guess ``/usr/local``).
    """
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root and _has_cuda_headers(root):
            return root
    candidates: list[str] = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = os.path.realpath(nvcc)
        candidates.append(os.path.dirname(os.path.dirname(real)))
        candidates.extend(_exec_targets(real))
    candidates.append("/usr/local/cuda")
    for root in candidates:
        if _has_cuda_headers(root):
            return root
    return None


def _has_cuda_headers(root: str) -> bool:
    return os.path.isfile(os.path.join(root, "include", "cuda_runtime_api.h")) and os.path.isfile(
        os.path.join(root, "bin", "nvcc.exe" if _is_windows() else "nvcc")
    )


def _exec_targets(script: str) -> list[str]:
    """Toolkit roots named by a small shell wrapper such as ``exec /usr/local/cuda-13.0/bin/nvcc "$@"``."""
    try:
        if os.path.getsize(script) > 4096:
            return []
        text = Path(script).read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return []
    roots = []
    for token in text.split():
        token = token.strip("'\"")
        if token.endswith("/bin/nvcc") and os.path.isabs(token):
            roots.append(os.path.dirname(os.path.dirname(token)))
    return roots


def nvcc_available() -> bool:
    return cuda_toolkit_root() is not None


def torch_cuda_version() -> str | None:
    """The CUDA version torch was built for (None for CPU-only torch or no torch)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.version.cuda


def cuda_build_requested() -> bool:
    """Whether to compile the CUDA kernels: nvcc present and a CUDA build of torch.

    ``FCCLIP_WITH_CUDA=0`` or ``=1`` overrides the detection (1 fails later if nvcc is missing).
    """
    forced = os.environ.get("FCCLIP_WITH_CUDA")
    if forced in ("0", "1"):
        return forced == "1"
    return nvcc_available() and torch_cuda_version() is not None


def cuda_device_visible() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def set_default_cuda_arch_list() -> str:
    """Give ``TORCH_CUDA_ARCH_LIST`` common targets when nobody chose and no GPU is visible.

    With a GPU visible torch compiles for that GPU; without one it would otherwise build for every
    architecture it knows, which takes long and may name targets this nvcc rejects.
    """
    current = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if current:
        return current
    if cuda_device_visible():
        return ""
    os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCH_LIST
    return DEFAULT_CUDA_ARCH_LIST


def ensure_cuda_home() -> str:
    """Point ``CUDA_HOME`` (and torch's cached guess, if cpp_extension is loaded) at the real toolkit."""
    root = cuda_toolkit_root()
    if root is None:
        raise RuntimeError("CUDA build requested but no CUDA toolkit (nvcc + headers) was found; set CUDA_HOME")
    os.environ["CUDA_HOME"] = root
    loaded = sys.modules.get("torch.utils.cpp_extension")
    if loaded is not None and not _has_cuda_headers(getattr(loaded, "CUDA_HOME", None) or ""):
        loaded.CUDA_HOME = root
    return root


def _relative_if_inside(path: Path, base: Path) -> str:
    """setuptools wants sources relative to setup.py's directory; other callers accept either."""
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def source_files(with_cuda: bool) -> list[Path]:
    names = CPU_SOURCES + (CUDA_SOURCES if with_cuda else ())
    return [CSRC_DIR / name for name in names]


def compile_flags(with_cuda: bool) -> dict[str, list[str]]:
    # no -std: torch adds the standard its headers need (C++20 for torch 2.14)
    # -g0: Python's own CFLAGS carry -g, which makes compiling torch's headers slow and the library big
    cxx = ["/O2"] if _is_windows() else ["-O3", "-g0"]
    cxx += _openmp_flags()
    flags = {"cxx": cxx}
    if with_cuda:
        flags["nvcc"] = ["-O3"]
    return flags


def extension_kwargs(with_cuda: bool) -> dict:
    """Keyword arguments for ``CppExtension`` / ``CUDAExtension`` building ``fcclip_core.ops._C``.

    With CUDA this also makes sure torch finds the real toolkit (see ``ensure_cuda_home``).
    """
    base = Path.cwd()
    include_dirs = [str(CSRC_DIR)]
    library_dirs: list[str] = []
    macros: list[tuple[str, str | None]] = []
    if with_cuda:
        root = ensure_cuda_home()
        include_dirs.append(os.path.join(root, "include"))
        library_dirs.append(os.path.join(root, "lib64"))
        macros.append(("WITH_CUDA", None))
    return {
        "name": EXTENSION_NAME,
        "sources": [_relative_if_inside(p, base) for p in source_files(with_cuda)],
        "include_dirs": include_dirs,
        "library_dirs": library_dirs,
        "define_macros": macros,
        "extra_compile_args": compile_flags(with_cuda),
        "extra_link_args": [] if _is_windows() else _openmp_flags(),
    }
