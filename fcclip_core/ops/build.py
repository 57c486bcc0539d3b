"""Build ``fcclip_core.ops._C`` from the build spec, the way ``pip install`` does, without installing.

    python -m fcclip_core.ops.build [--cuda | --no-cuda] [--inplace] [--build-dir DIR]

``--inplace`` drops the library next to fcclip_core/ops/ (for development from the checkout; it is
git-ignored). Without it the library goes to ``DIR/lib``. CUDA is included when requested or, by
default, when ``build_spec.cuda_build_requested()`` says nvcc and a CUDA torch are present; it works
without a GPU (``TORCH_CUDA_ARCH_LIST`` then defaults to ``build_spec.DEFAULT_CUDA_ARCH_LIST``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from fcclip_core.ops import build_spec

REPO_ROOT = build_spec.OPS_DIR.parent.parent
DEFAULT_BUILD_DIR = REPO_ROOT / "build" / "fcclip_ops"


def build_extension(with_cuda: bool, inplace: bool = False, build_dir: Path = DEFAULT_BUILD_DIR) -> Path:
    """Compile the extension with torch's BuildExtension; returns the path of the built library."""
    from setuptools import Distribution
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    if with_cuda:
        build_spec.set_default_cuda_arch_list()
    previous_cwd = os.getcwd()
    os.chdir(REPO_ROOT)  # setuptools resolves sources and in-place targets from the project root
    try:
        kwargs = build_spec.extension_kwargs(with_cuda)
        extension = CUDAExtension(**kwargs) if with_cuda else CppExtension(**kwargs)
        distribution = Distribution({"name": "fcclip_ops", "ext_modules": [extension]})
        distribution.cmdclass["build_ext"] = BuildExtension
        command = distribution.get_command_obj("build_ext")
        command.inplace = int(inplace)
        command.build_temp = str(build_dir / "temp")
        command.build_lib = str(build_dir / "lib")
        distribution.run_command("build_ext")
        return Path(command.get_ext_fullpath(extension.name)).resolve()
    finally:
        os.chdir(previous_cwd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = parser.add_mutually_exclusive_group()
    cuda.add_argument("--cuda", dest="cuda", action="store_true", default=None, help="include the CUDA kernels")
    cuda.add_argument("--no-cuda", dest="cuda", action="store_false", help="CPU kernels only")
    parser.add_argument("--inplace", action="store_true", help="put the library into fcclip_core/ops/")
    parser.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD_DIR, help="objects (and library unless --inplace)")
    args = parser.parse_args(argv)

    with_cuda = build_spec.cuda_build_requested() if args.cuda is None else args.cuda
    started = time.monotonic()
    library = build_extension(with_cuda, inplace=args.inplace, build_dir=args.build_dir.resolve())
    arch = os.environ.get("TORCH_CUDA_ARCH_LIST", "") if with_cuda else ""
    kind = f"CPU+CUDA (TORCH_CUDA_ARCH_LIST={arch or 'visible GPU'})" if with_cuda else "CPU"
    print(f"built {kind} extension {library} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
