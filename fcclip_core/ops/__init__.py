"""Multi-scale deformable attention: one entry point over native and reference kernels.

``ms_deform_attn`` runs the CUDA op for CUDA tensors, the native CPU op for CPU tensors and the
pure-PyTorch ``ms_deform_attn_reference`` when the extension is unavailable; ``active_backend``
says which (see ``fcclip_core.ops.dispatch`` for the ``FCCLIP_MSDA_BACKEND`` override).
"""


def _also_search_installed_copies(path: list) -> None:
    """Running from a checkout (python -m ... in the repository root) shadows the installed
    package, whose compiled extension _C the checkout lacks: let this package also look in the
    installed copy (after its own folder), so the install's build is used, not a JIT build."""
    import os
    import sys

    for entry in sys.path:
        candidate = os.path.join(entry or os.curdir, "fcclip_core", "ops")
        if os.path.isdir(candidate) and not any(os.path.samefile(candidate, p) for p in path):
            path.append(candidate)


_also_search_installed_copies(__path__)

from fcclip_core.ops.dispatch import active_backend, ms_deform_attn  # noqa: E402
from fcclip_core.ops.reference import ms_deform_attn_reference  # noqa: E402

__all__ = ["active_backend", "ms_deform_attn", "ms_deform_attn_reference"]
