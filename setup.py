"""Build and install fcclip_ros on a pip-only machine (ROS 2 from the PyPI wheels).

In a ROS 2 workspace colcon builds this package from CMakeLists.txt. Here setuptools drives
that same CMake file for the interfaces (msg/, srv/), ships what it installs (generated Python
modules, type-support libraries, ament index, the `ros2 run` wrapper) inside the wheel, and
builds the Python packages, the native deformable-attention op and the console scripts itself.

Use it through the repository's set-up script, or directly (non-editable, no build isolation,
so that the already installed torch and ROS wheels are used):
    pip install --no-build-isolation --no-deps .
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Command, Distribution, find_packages, setup
from setuptools.command.build import build

ROOT = Path(__file__).resolve().parent
CMAKE_WORK_DIR = ROOT / "build" / "ros_interfaces"
# What CMakeLists.txt reads. It is configured from a copy: CMake refuses to export include
# directories that lie inside the source tree, which the NumPy headers of a virtual
# environment kept in the checkout (./.venv) would otherwise do.
CMAKE_SOURCES = ("CMakeLists.txt", "package.xml", "msg", "srv", "scripts", "launch", "config", "demo_images")


def package_version() -> str:
    """The version lives in package.xml only, so both build systems agree on it."""
    text = (ROOT / "package.xml").read_text(encoding="utf-8")
    match = re.search(r"<version>([^<]+)</version>", text)
    if not match:
        raise RuntimeError("package.xml has no <version>")
    return match.group(1).strip()


def _prepend_path(env: dict[str, str], name: str, entry: str) -> None:
    parts = [p for p in env.get(name, "").split(os.pathsep) if p]
    if entry not in parts:
        env[name] = os.pathsep.join([entry, *parts])


def _copy_if_changed(source: str, destination: str) -> str:
    if not (os.path.exists(destination) and Path(source).read_bytes() == Path(destination).read_bytes()):
        shutil.copy2(source, destination)
    return destination


class BuildRosInterfaces(Command):
    """Generate and compile the ROS 2 interfaces with CMakeLists.txt against the installed wheels."""

    description = "build the ROS 2 interfaces (msg/, srv/) with CMake"
    user_options: list = []

    def initialize_options(self) -> None:
        self.build_lib: str | None = None

    def finalize_options(self) -> None:
        self.set_undefined_options("build", ("build_lib", "build_lib"))

    def run(self) -> None:
        cmake = shutil.which("cmake")
        if cmake is None:
            raise RuntimeError("cmake is required to build the ROS 2 interfaces (pip install cmake)")
        source_dir = self._copy_sources(CMAKE_WORK_DIR / "src")
        build_dir = CMAKE_WORK_DIR / "build"
        stage = CMAKE_WORK_DIR / "stage"
        env = dict(os.environ)
        # rosidl finds the available type supports through the ament index of the wheels.
        _prepend_path(env, "AMENT_PREFIX_PATH", sys.prefix)
        _prepend_path(env, "CMAKE_PREFIX_PATH", sys.prefix)
        subprocess.check_call(
            [
                cmake, "-S", str(source_dir), "-B", str(build_dir),
                "-DFCCLIP_PIP_BUILD=ON",
                "-DBUILD_TESTING=OFF",
                "-DCMAKE_BUILD_TYPE=Release",
                f"-DCMAKE_INSTALL_PREFIX={stage}",
                f"-DCMAKE_PREFIX_PATH={sys.prefix}",
                f"-DPython3_EXECUTABLE={sys.executable}",
            ],
            env=env,
        )
        jobs = str(os.cpu_count() or 2)
        subprocess.check_call([cmake, "--build", str(build_dir), "--parallel", jobs], env=env)
        shutil.rmtree(stage, ignore_errors=True)
        subprocess.check_call([cmake, "--install", str(build_dir)], env=env)
        self._ship(stage)

    @staticmethod
    def _copy_sources(destination: Path) -> Path:
        """Mirror the CMake inputs; unchanged files keep their times, so rebuilds stay incremental."""
        for name in CMAKE_SOURCES:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, destination / name, dirs_exist_ok=True, copy_function=_copy_if_changed)
            elif source.is_file():
                destination.mkdir(parents=True, exist_ok=True)
                _copy_if_changed(str(source), str(destination / name))
        return destination

    def _ship(self, stage: Path) -> None:
        """Merge the generated Python modules into fcclip_ros; everything else becomes data files."""
        site_dirs = [p for p in stage.glob("lib/python*/site-packages") if p.is_dir()]
        if len(site_dirs) != 1:
            raise RuntimeError(f"expected one site-packages folder under {stage}, found {site_dirs}")
        generated = site_dirs[0] / "fcclip_ros"
        target = Path(self.build_lib) / "fcclip_ros"
        for source in generated.rglob("*"):
            relative = source.relative_to(generated)
            # Our own __init__.py stays: it is a superset of the generated (empty) one.
            if source.is_dir() or relative == Path("__init__.py") or "__pycache__" in relative.parts:
                continue
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)

        data_files: dict[str, list[str]] = {}
        for source in sorted(stage.rglob("*")):
            if source.is_dir() or site_dirs[0] in source.parents:
                continue
            folder = str(source.parent.relative_to(stage))
            data_files.setdefault(folder, []).append(str(source))
        self.distribution.data_files = sorted(data_files.items())

        # ament_index_python (launch, ros2 CLI) looks for packages under AMENT_PREFIX_PATH; this
        # .pth adds the environment's prefix at interpreter start, so no `source` step is needed.
        (Path(self.build_lib) / "fcclip_ros_ament_prefix.pth").write_text(
            "import os, sys; _p = [e for e in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if e]; "
            "sys.prefix in _p or os.environ.__setitem__('AMENT_PREFIX_PATH', os.pathsep.join([sys.prefix] + _p))\n",
            encoding="utf-8",
        )


class PlatformDistribution(Distribution):
    """The wheel always holds compiled interface libraries, so it is never pure Python."""

    def has_ext_modules(self) -> bool:
        return True


class BuildAll(build):
    """The standard build, then the interfaces (they are merged into the built fcclip_ros)."""

    sub_commands = build.sub_commands + [("build_ros_interfaces", None)]


def native_op_extensions() -> tuple[list, dict]:
    """The deformable-attention extension, when torch and a compiler are available at build time.

    Without them the package still works: the op is compiled on first use or the pure-PyTorch
    reference runs (see fcclip_core.ops).
    """
    if os.environ.get("FCCLIP_BUILD_OPS", "1") == "0":
        return [], {}
    spec_file = ROOT / "fcclip_core" / "ops" / "build_spec.py"
    if not spec_file.is_file():
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
    except ImportError:
        print("fcclip_ros: torch not importable at build time; native ops will be built on first use")
        return [], {}
    sys.path.insert(0, str(spec_file.parent))
    try:
        import build_spec  # fcclip_core/ops/build_spec.py, importable without the package
    finally:
        sys.path.pop(0)
    with_cuda = build_spec.cuda_build_requested()
    if with_cuda:
        build_spec.set_default_cuda_arch_list()
        extension = CUDAExtension(**build_spec.extension_kwargs(with_cuda=True))
    else:
        extension = CppExtension(**build_spec.extension_kwargs(with_cuda=False))
    return [extension], {"build_ext": BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)}


extensions, extension_commands = native_op_extensions()

setup(
    name="fcclip_ros",
    version=package_version(),
    description="FC-CLIP open-vocabulary segmentation for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["fcclip_core", "fcclip_core.*", "fcclip_ros", "fcclip_ros.*"]),
    package_data={
        "fcclip_core": ["configs/*.yaml", "data/*", "ops/csrc/*", "ops/csrc/*/*", "data/eval_vocabularies/*.json"],
    },
    ext_modules=extensions,
    extras_require={"ray": ["ray>=2.40"]},
    cmdclass={"build": BuildAll, "build_ros_interfaces": BuildRosInterfaces, **extension_commands},
    entry_points={
        "console_scripts": [
            "fcclip-segment=fcclip_core.tools.segment:main",
            "fcclip-weights=fcclip_core.tools.weights:main",
            "fcclip-segment-node=fcclip_ros.segment_node:main",
            "fcclip-image-player=fcclip_ros.image_player:main",
            "fcclip-demo=fcclip_ros.demo:main",
            "fcclip-eval=fcclip_core.tools.evaluate:main",
        ],
    },
    distclass=PlatformDistribution,
    zip_safe=False,
)
