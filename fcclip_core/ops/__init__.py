"""Multi-scale deformable attention: one entry point over native and reference kernels.

``ms_deform_attn`` runs the CUDA op for CUDA tensors, the native CPU op for CPU tensors and the
pure-PyTorch ``ms_deform_attn_reference`` when the extension is unavailable; ``active_backend``
says which (see ``fcclip_core.ops.dispatch`` for the ``FCCLIP_MSDA_BACKEND`` override).
"""
from fcclip_core.ops.dispatch import active_backend, ms_deform_attn
from fcclip_core.ops.reference import ms_deform_attn_reference

__all__ = ["active_backend", "ms_deform_attn", "ms_deform_attn_reference"]
