"""Fixtures of the ROS tests: a wire-compatible vision_msgs built at test time.

vision_msgs is a pure interface package that has no PyPI wheel. To exercise the node's
Detection2DArray path for real, the fixture generates a package named vision_msgs from the
field lists below (vision_msgs 4.1.1, the ROS 2 Humble/Jazzy/Kilted release) with the same
CMake/rosidl recipe as fcclip_ros, in a cache folder under build/. Its generated type hashes are
checked against the published ones, which proves the messages are the same on the wire.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Field lists of vision_msgs 4.1.1, in declaration order (what the type hash covers).
VISION_MSGS_FIELDS: dict[str, tuple[str, ...]] = {
    "Point2D": ("float64 x", "float64 y"),
    "Pose2D": ("Point2D position", "float64 theta"),
    "BoundingBox2D": ("Pose2D center", "float64 size_x", "float64 size_y"),
    "BoundingBox2DArray": ("std_msgs/Header header", "BoundingBox2D[] boxes"),
    "BoundingBox3D": ("geometry_msgs/Pose center", "geometry_msgs/Vector3 size"),
    "BoundingBox3DArray": ("std_msgs/Header header", "BoundingBox3D[] boxes"),
    "ObjectHypothesis": ("string class_id", "float64 score"),
    "ObjectHypothesisWithPose": ("ObjectHypothesis hypothesis", "geometry_msgs/PoseWithCovariance pose"),
    "Classification": ("std_msgs/Header header", "ObjectHypothesis[] results"),
    "Detection2D": ("std_msgs/Header header", "ObjectHypothesisWithPose[] results", "BoundingBox2D bbox",
                    "string id"),
    "Detection2DArray": ("std_msgs/Header header", "Detection2D[] detections"),
    "Detection3D": ("std_msgs/Header header", "ObjectHypothesisWithPose[] results", "BoundingBox3D bbox",
                    "string id"),
    "Detection3DArray": ("std_msgs/Header header", "Detection3D[] detections"),
    "VisionClass": ("uint16 class_id", "string class_name"),
    "LabelInfo": ("std_msgs/Header header", "VisionClass[] class_map", "float32 threshold"),
    "VisionInfo": ("std_msgs/Header header", "string method", "string database_location",
                   "int32 database_version"),
}
# Published type hashes of vision_msgs 4.1.1 (see the project's notes on ROS from wheels).
VISION_MSGS_HASHES = {
    "Detection2DArray": "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    "Detection2D": "RIHS01_0d12b69df5c593b3455b7346fac8205437a7d4bcb09b9e0e0b2dde787ded38ea",
}

_PACKAGE_XML = """<?xml version="1.0"?>
<package format="3">
  <name>vision_msgs</name>
  <version>4.1.1</version>
  <description>Test-only stand-in with the vision_msgs 4.1.1 message definitions.</description>
  <maintainer email="fcclip-ros@users.noreply.github.com">fcclip_ros tests</maintainer>
  <license>Apache-2.0</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>std_msgs</depend>
  <depend>geometry_msgs</depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
"""

# The wheels export include directories of their build machine; point them at this Python's.
_CMAKE = """cmake_minimum_required(VERSION 3.21)
project(vision_msgs C CXX)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(std_msgs REQUIRED)
find_package(geometry_msgs REQUIRED)
find_package(Python3 REQUIRED COMPONENTS Interpreter Development)
execute_process(COMMAND "${Python3_EXECUTABLE}" -c "import numpy; print(numpy.get_include())"
  OUTPUT_VARIABLE numpy_include OUTPUT_STRIP_TRAILING_WHITESPACE)
get_property(imported DIRECTORY PROPERTY IMPORTED_TARGETS)
foreach(target IN LISTS imported)
  get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
  if(dirs)
    list(TRANSFORM dirs REPLACE "^/opt/python/.*/numpy/_core/include$" "${numpy_include}")
    list(TRANSFORM dirs REPLACE "^/opt/python/.*/include/python3[.0-9]*$" "${Python3_INCLUDE_DIRS}")
    set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${dirs}")
  endif()
endforeach()
file(GLOB msg_files RELATIVE "${CMAKE_CURRENT_SOURCE_DIR}" "msg/*.msg")
rosidl_generate_interfaces(${PROJECT_NAME} ${msg_files} DEPENDENCIES std_msgs geometry_msgs)
ament_package()
"""


@dataclass(frozen=True)
class InterfacePrefix:
    """An install prefix holding a built interface package, and the environment that finds it."""

    root: Path

    @property
    def site_packages(self) -> Path:
        return self.root / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        for name, entry in (("PYTHONPATH", self.site_packages), ("LD_LIBRARY_PATH", self.root / "lib"),
                            ("AMENT_PREFIX_PATH", self.root)):
            env[name] = os.pathsep.join(p for p in (str(entry), env.get(name, "")) if p)
        return env

    def type_hash(self, message: str) -> str:
        description = json.loads((self.root / "share" / "vision_msgs" / "msg" / f"{message}.json").read_text())
        return description["type_hashes"][0]["hash_string"]


def _write_sources(source: Path) -> None:
    (source / "msg").mkdir(parents=True, exist_ok=True)
    for name, fields in VISION_MSGS_FIELDS.items():
        (source / "msg" / f"{name}.msg").write_text("\n".join(fields) + "\n")
    (source / "package.xml").write_text(_PACKAGE_XML)
    (source / "CMakeLists.txt").write_text(_CMAKE)


def build_vision_msgs(cache: Path) -> InterfacePrefix:
    """Build (once per definition change) and install the stand-in vision_msgs under ``cache``."""
    key = hashlib.sha256(json.dumps([VISION_MSGS_FIELDS, _CMAKE, _PACKAGE_XML, sys.version]).encode()).hexdigest()[:16]
    work = cache / key
    prefix = InterfacePrefix(work / "install")
    if (work / "complete").is_file():
        return prefix
    shutil.rmtree(work, ignore_errors=True)
    _write_sources(work / "src")
    cmake = shutil.which("cmake") or str(Path(sys.executable).parent / "cmake")
    env = dict(os.environ)
    for name in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH"):
        env[name] = os.pathsep.join(p for p in (sys.prefix, env.get(name, "")) if p)
    log = work / "build.log"
    with log.open("w") as out:
        for command in (
            [cmake, "-S", str(work / "src"), "-B", str(work / "build"), "-DBUILD_TESTING=OFF",
             "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_INSTALL_PREFIX={prefix.root}",
             f"-DCMAKE_PREFIX_PATH={sys.prefix}", f"-DPython3_EXECUTABLE={sys.executable}"],
            [cmake, "--build", str(work / "build"), "--parallel", str(os.cpu_count() or 2)],
            [cmake, "--install", str(work / "build")],
        ):
            if subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise RuntimeError(f"building the test vision_msgs failed; see {log}")
    (work / "complete").write_text("ok\n")
    return prefix


@pytest.fixture(scope="session")
def vision_msgs_prefix() -> InterfacePrefix:
    """The stand-in vision_msgs, built on first use (about a minute) and cached under build/."""
    try:
        return build_vision_msgs(REPO_ROOT / "build" / "test_vision_msgs")
    except (RuntimeError, OSError) as error:
        pytest.fail(f"could not build the test vision_msgs package: {error}")


def _preload_libraries(prefix: InterfacePrefix) -> None:
    """Make the test vision_msgs usable inside this (already started) process.

    The dynamic linker reads LD_LIBRARY_PATH only at start-up, so the generated libraries are
    loaded by path first; rosidl's run-time type-support lookup reads the variable when called.
    """
    import ctypes

    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(prefix.root / "lib"), os.environ.get("LD_LIBRARY_PATH", "")) if p)
    for kind in ("generator_c", "typesupport_introspection_c", "typesupport_fastrtps_c", "typesupport_c",
                 "generator_py"):
        ctypes.CDLL(str(prefix.root / "lib" / f"libvision_msgs__rosidl_{kind}.so"), mode=ctypes.RTLD_GLOBAL)
    if str(prefix.site_packages) not in sys.path:
        sys.path.insert(0, str(prefix.site_packages))


@pytest.fixture(scope="session")
def vision_msgs_module(vision_msgs_prefix: InterfacePrefix):
    """``vision_msgs.msg`` of the test package, importable and usable with rclpy in this process."""
    _preload_libraries(vision_msgs_prefix)
    import vision_msgs.msg

    return vision_msgs.msg


@pytest.fixture(scope="module")
def peer():
    """An rclpy node inside the test process (own context and executor thread), one per test module."""
    from .harness import Peer

    peer = Peer(f"test_peer_{os.getpid()}")
    yield peer
    peer.close()
