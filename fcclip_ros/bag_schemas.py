"""Message definitions and channel metadata for writing ROS 2 MCAP files that ROS tools can read.

MCAP's ``ros2`` profile stores, per schema, the complete ``ros2msg`` definition: the type's own
.msg text followed by every type it uses, each after a line of 80 ``=`` and ``MSG: pkg/msg/Type``.
The texts are read from the installed interface packages (``share/<pkg>/msg/<Type>.msg``, found
through the ament index), our own types included, so Foxglove, ``mcap-ros2-support`` and
``ros2 bag`` decode the output without this package.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

PRIMITIVES = frozenset({"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16",
                        "int32", "uint32", "int64", "uint64", "string", "wstring"})
SEPARATOR = "=" * 80
# QoS offered by the writers of our outputs, in rosbag2's metadata form (ros2 bag play reuses it).
_NEVER = "{sec: 9223372036, nsec: 854775807}"


def _qos_yaml(depth: int, durability: str) -> str:
    return (f"- history: keep_last\n  depth: {depth}\n  reliability: reliable\n  durability: {durability}\n"
            f"  deadline: {_NEVER}\n  lifespan: {_NEVER}\n  liveliness: automatic\n"
            f"  liveliness_lease_duration: {_NEVER}\n  avoid_ros_namespace_conventions: false\n")


OUTPUT_QOS = _qos_yaml(depth=5, durability="volatile")
LATCHED_QOS = _qos_yaml(depth=1, durability="transient_local")


def type_name(message_class: Any) -> str:
    """``pkg/msg/Type`` of a generated ROS 2 message class."""
    package = message_class.__module__.split(".")[0]
    return f"{package}/msg/{message_class.__name__}"


def _msg_file(name: str) -> Path:
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    package, _, short = name.split("/")
    try:
        path = Path(get_package_share_directory(package)) / "msg" / f"{short}.msg"
    except PackageNotFoundError:
        raise LookupError(f"interface package {package!r} is not installed (needed for {name})") from None
    if not path.is_file():
        raise LookupError(f"no message definition {path} for {name}")
    return path


def _field_types(text: str, package: str) -> list[str]:
    """The non-primitive field types of a .msg text, as ``pkg/msg/Type``, in order."""
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        base = re.split(r"[\[<]", line.split()[0], maxsplit=1)[0]
        if base in PRIMITIVES:  # constants are always primitive
            continue
        if "/" in base:
            pkg, short = base.split("/")[0], base.split("/")[-1]
        else:
            pkg, short = package, base
        found.append(f"{pkg}/msg/{short}")
    return found


@lru_cache(maxsize=None)
def complete_definition(name: str) -> str:
    """The ``ros2msg`` schema text of ``name`` (``pkg/msg/Type``) with all its dependencies."""
    order: list[str] = []
    texts: dict[str, str] = {}

    def visit(current: str) -> None:
        texts[current] = _msg_file(current).read_text(encoding="utf-8")
        for dependency in _field_types(texts[current], current.split("/")[0]):
            if dependency not in texts:
                order.append(dependency)
                visit(dependency)

    visit(name)
    parts = [texts[name].rstrip("\n")]
    for dependency in order:
        parts.append(f"{SEPARATOR}\nMSG: {dependency}\n{texts[dependency].rstrip(chr(10))}")
    return "\n".join(parts) + "\n"
