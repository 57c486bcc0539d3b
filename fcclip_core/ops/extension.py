"""Finding the native extension: the installed ``fcclip_core.ops._C``, else a cached JIT build.

Loading happens once per process, on first use. A failed JIT build is never fatal: it logs one
warning and the caller falls back to the pure-PyTorch reference.

Environment: ``FCCLIP_CACHE_DIR`` (JIT build cache root, default ``~/.cache/fcclip_ros``),
``FCCLIP_MSDA_JIT=0`` (never compile at run time), ``CXX`` (the compiler looked for).
"""
from __future__ import annotations

import importlib
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from fcclip_core.ops import build_spec

LOG = logging.getLogger("fcclip_core.ops")
JIT_NAME_CPU = "fcclip_msda_cpu"
JIT_NAME_CUDA = "fcclip_msda_cuda"


@dataclass(frozen=True)
class NativeOps:
    """The loaded extension (or None) and a human-readable word on where it came from."""

    module: ModuleType | None
    origin: str

    @property
    def has_cuda(self) -> bool:
        return self.module is not None and bool(self.module.has_cuda())


_lock = threading.Lock()
_loaded: NativeOps | None = None


def cache_root() -> Path:
    """``$FCCLIP_CACHE_DIR`` or ``~/.cache/fcclip_ros``: where JIT builds are kept between runs."""
    configured = os.environ.get("FCCLIP_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "fcclip_ros"


def jit_build_dir(name: str) -> Path:
    import torch

    return cache_root() / "torch_extensions" / torch.__version__ / name


def native_ops() -> NativeOps:
    """The native extension, loading or compiling it on the first call."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _load()
        return _loaded


def _load() -> NativeOps:
    try:
        module = importlib.import_module("fcclip_core.ops._C")
        return NativeOps(module, "installed fcclip_core.ops._C")
    except ImportError as exc:
        installed_error = str(exc)
    if os.environ.get("FCCLIP_MSDA_JIT", "1") == "0":
        return NativeOps(None, f"not installed ({installed_error}) and JIT disabled by FCCLIP_MSDA_JIT=0")
    missing = _missing_build_tools()
    if missing:
        return NativeOps(None, f"not installed and cannot be compiled here: {missing}")
    try:
        module, build_dir = jit_compile()
    except Exception as exc:  # a broken toolchain must not take the model down
        reason = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
        LOG.warning("fcclip_core.ops: JIT build of the native op failed (%s); using the PyTorch reference", reason[0])
        return NativeOps(None, "JIT build failed")
    return NativeOps(module, f"JIT build in {build_dir}")


def _missing_build_tools() -> str:
    absent = [path.name for path in build_spec.source_files(False) if not path.is_file()]
    if absent:
        return f"kernel sources missing ({', '.join(absent)})"
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler}) on PATH"
    if shutil.which("ninja") is None:
        try:
            importlib.import_module("ninja")
        except ImportError:
            return "ninja is not installed (pip install ninja)"
    return ""


def jit_compile(with_cuda: bool | None = None, build_dir: Path | None = None, verbose: bool = False):
    """Compile and import the extension with ``torch.utils.cpp_extension.load``.

    CUDA kernels are included only when a GPU is usable here and nvcc is present (a CPU-only JIT
    build takes well under a minute; the CUDA one takes several). Returns (module, build dir).
    """
    import torch

    if with_cuda is None:
        with_cuda = torch.cuda.is_available() and build_spec.cuda_build_requested()
    if with_cuda:
        build_spec.set_default_cuda_arch_list()
        build_spec.ensure_cuda_home()
    name = JIT_NAME_CUDA if with_cuda else JIT_NAME_CPU
    build_dir = build_dir or jit_build_dir(name)
    build_dir.mkdir(parents=True, exist_ok=True)
    spec = build_spec.extension_kwargs(with_cuda)
    from torch.utils.cpp_extension import load

    macro_flags = [f"-D{key}" if val is None else f"-D{key}={val}" for key, val in spec["define_macros"]]
    flags = spec["extra_compile_args"]
    LOG.info("fcclip_core.ops: compiling the native op (%s) into %s", "CPU+CUDA" if with_cuda else "CPU", build_dir)
    module = load(
        name=name,
        sources=[str(path) for path in build_spec.source_files(with_cuda)],
        extra_include_paths=spec["include_dirs"],
        extra_cflags=flags["cxx"] + macro_flags,
        extra_cuda_cflags=flags.get("nvcc", []) + macro_flags,
        extra_ldflags=spec["extra_link_args"] + [f"-L{d}" for d in spec["library_dirs"]],
        with_cuda=with_cuda,
        build_directory=str(build_dir),
        verbose=verbose,
    )
    return module, build_dir
