"""Reading weight files whatever their name says, with errors that say what the file is.

Files fetched by hand get renamed, and a failed Google Drive download is often an HTML page
saved under the checkpoint's name, so the format is told from the first bytes: a PyTorch zip
archive (memory-mapped, nothing is copied), a safetensors file (memory-mapped), or a legacy
PyTorch pickle. Pickles are read with ``weights_only=True``: tensors and plain containers only.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional

if TYPE_CHECKING:  # torch is imported where tensors are read: `fcclip-weights list` never needs it
    import torch

ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOL_2_PLUS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
EXPORT_FORMAT = "fcclip_ros.weights"
Tensors = Dict[str, "torch.Tensor"]


def _error(path: Path, what: str):
    from fcclip_core.weights.errors import WeightsFileError

    return WeightsFileError(f"{path}: {what}")


def sniff_format(path: Path) -> str:
    """'torch-zip', 'safetensors', 'torch-legacy', or raise with what the file looks like."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        raise _error(path, "file not found") from None
    except OSError as exc:
        raise _error(path, f"cannot read: {exc}") from None
    if size == 0:
        raise _error(path, "empty file (an interrupted copy or download?)")
    if head.startswith(ZIP_MAGIC):
        return "torch-zip"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 8 + header_len <= size:
            return "safetensors"
        if head[8:9] == b"{":
            raise _error(path, f"truncated safetensors file: its header announces {header_len} bytes, "
                               f"the file has {size}")
    if head[:2] in PICKLE_PROTOCOL_2_PLUS:
        return "torch-legacy"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        raise _error(path, "an HTML page, not a weights file (Google Drive serves a web page when a file is "
                           "over its download quota or not shared; fetch the file in a browser and import it)")
    raise _error(path, f"not a weights file (neither a PyTorch checkpoint nor safetensors; first bytes {head[:16]!r})")


def read_tensors(path: Path) -> Tensors:
    """Every tensor of a weights file, memory-mapped where the format allows.

    Unwraps ``{"model": ...}`` (detectron2) and ``{"state_dict": ...}`` and strips a ``module.``
    prefix; raises ``WeightsFileError`` naming the problem (truncated, not a checkpoint, ...).
    """
    import torch

    path = Path(path)
    kind = sniff_format(path)
    if kind == "safetensors":
        _safetensors_header(path)  # a truncated file is reported as such
    try:
        if kind == "safetensors":
            from safetensors.torch import load_file

            data: Any = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=(kind == "torch-zip"))
    except Exception as exc:  # the message below says what kind of file failed and how
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Weights only load failed" in str(exc) or "weights_only" in str(exc):
            raise _error(path, "holds Python objects besides tensors; refusing to unpickle them "
                               f"(weights_only=True): {reason}") from None
        raise _error(path, f"truncated or corrupt {kind} file ({type(exc).__name__}: {reason}); delete it "
                           "and fetch it again") from None
    return unwrap_tensors(data, path)


def unwrap_tensors(data: Any, path: Path | str) -> Tensors:
    """The tensors of a loaded checkpoint object (``path`` names it in errors)."""
    import torch

    for wrapper in ("model", "state_dict"):
        if isinstance(data, Mapping) and isinstance(data.get(wrapper), Mapping):
            data = data[wrapper]
            break
    if isinstance(data, torch.nn.Module):
        data = data.state_dict()
    if not isinstance(data, Mapping):
        raise _error(path, f"holds a {type(data).__name__}, not a checkpoint (a mapping of tensor names to tensors)")
    tensors = {str(k): v for k, v in data.items() if torch.is_tensor(v)}
    if not tensors:
        raise _error(path, f"holds no tensors (keys: {list(data)[:8]}); not a checkpoint")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def export_metadata(path: Path) -> Optional[dict[str, str]]:
    """The metadata of a safetensors file written by ``fcclip-weights export``, else None."""
    path = Path(path)
    if sniff_format(path) != "safetensors":
        return None
    meta = _safetensors_header(path).get("__metadata__") or {}
    return dict(meta) if meta.get("format") == EXPORT_FORMAT else None


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of a safetensors file, from its header alone."""
    header = _safetensors_header(Path(path))
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def _safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header, after checking that the data it describes is all in the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        raw = f.read(length)
    try:
        header = json.loads(raw)
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError):
        raise _error(path, "corrupt safetensors header") from None
    if 8 + length + end != size:
        raise _error(path, f"truncated or padded safetensors file: the header describes {8 + length + end} "
                           f"bytes, the file has {size}")
    return header
