"""Export: one safetensors file with every tensor the model needs, loaded memory-mapped.

The checkpoint and its CLIP weights are assigned to an empty model exactly as for inference
(same key selection, scalar reshapes and dtypes), and that model's state dict is what is
written: loading the export therefore gives the same tensors, bit for bit, without a pickle
and without the second file. The header metadata names the model config, the source files and
their hashes, and the format version.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional

import torch

from fcclip_core.weights.cache import publish, remove_quietly, sha256_file
from fcclip_core.weights.files import EXPORT_FORMAT, read_tensors
from fcclip_core.weights.verify import check_export, load_complete

EXPORT_FORMAT_VERSION = "1"


def standalone_tensors(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors that share no storage (safetensors stores each tensor on its own).

    Tied or viewed tensors (one storage behind several names, or a slice of a larger storage)
    are copied; everything else is passed through untouched.
    """
    seen: set[int] = set()
    out = {}
    for key, value in state.items():
        tensor = value.detach()
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        whole = storage.nbytes() == tensor.numel() * tensor.element_size() and tensor.storage_offset() == 0
        if pointer in seen or not whole or not tensor.is_contiguous():
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        else:
            seen.add(pointer)
        out[key] = tensor
    return out


def export_weights(
    config_name: str,
    checkpoint: Path,
    clip: Optional[Path],
    output: Path,
    *,
    model_name: str = "",
    source_hashes: Optional[Mapping[str, str]] = None,
    part: Optional[Path] = None,
) -> dict[str, str]:
    """Write the single-file export of ``checkpoint`` (+ ``clip``) to ``output``; return its metadata.

    ``source_hashes``: sha256 of the inputs when already known (the cache manifest), else they
    are computed. The file is written to ``part`` (default ``<output>.part``), checked, then
    renamed: ``output`` never exists half-written.
    """
    from safetensors.torch import save_file

    checkpoint, output = Path(checkpoint), Path(output)
    hashes = dict(source_hashes or {})
    sources = {"checkpoint": {"file": checkpoint.name,
                              "sha256": hashes.get("checkpoint") or sha256_file(checkpoint)}}
    if clip is not None:
        clip = Path(clip)
        sources["clip"] = {"file": clip.name, "sha256": hashes.get("clip") or sha256_file(clip)}
    model = load_complete(read_tensors(checkpoint), read_tensors(clip) if clip is not None else None,
                          config_name, where=str(checkpoint))
    metadata = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "model": model_name,
        "model_config": config_name,
        "sources": json.dumps(sources, sort_keys=True),
        "created_by": "fcclip-weights export",
    }
    part = Path(part) if part is not None else output.with_name(output.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_file(standalone_tensors(model.state_dict()), str(part), metadata=metadata)
        del model
        check_export(part, config_name)
        publish(part, output)
    except BaseException:
        remove_quietly(part)
        raise
    return metadata
