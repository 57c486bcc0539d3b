"""timm trunks defined by config data, registered with timm under names derived from them.

open_clip builds its vision tower by asking timm for a model name; a config may describe a trunk
timm does not ship (the tiny fixture's ConvNeXt with depths (2, 2, 3, 2)) as a timm base model
plus architecture overrides. Each registered entrypoint also lives in this module (timm records
its module), so this module's namespace lists exactly what was registered.
"""
from __future__ import annotations

import hashlib
import json
import sys

import timm

from fcclip_core.config import TimmTrunkConfig

__all__ = ["register_timm_trunk"]


def register_timm_trunk(trunk: TimmTrunkConfig) -> str:
    """Register ``trunk`` with timm and return the name open_clip must ask timm for.

    The registered name is derived from the architecture, so two configs that reuse a name for
    different sizes never see each other's trunk, and registering again is a no-op.
    """
    spec = json.dumps({"base": trunk.base, "args": dict(trunk.args)}, sort_keys=True)
    digest = hashlib.sha256(spec.encode("utf-8")).hexdigest()[:12]
    name = f"fcclip_{trunk.base}_{digest}"
    if timm.is_model(name):
        return name
    if not timm.is_model(trunk.base):
        raise ValueError(f"timm has no model {trunk.base!r} to derive the trunk {trunk.name!r} from")
    base, overrides = trunk.base, dict(trunk.args)

    def entrypoint(pretrained: bool = False, **kwargs):
        if pretrained:
            raise ValueError(f"trunk {trunk.name!r} has no pretrained timm weights")
        return timm.create_model(base, pretrained=False, **{**overrides, **kwargs})

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    setattr(sys.modules[__name__], name, entrypoint)
    timm.models.register_model(entrypoint)
    return name
