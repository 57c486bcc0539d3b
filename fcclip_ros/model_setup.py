"""Where the node's model comes from: the weights lookup and the Predictor it builds.

Weights are found as everywhere in the product (``fcclip_core.weights``): an explicit file (the
``weights`` parameter, else ``$FCCLIP_WEIGHTS``), then the weights cache filled by
``fcclip-weights``, then a download when the ``allow_download`` parameter says so. Only when
none of them has weights, and ``allow_untrained`` is set, does an untrained model run. The node
and the demo runner share this module so they decide the same way.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHTS_ENV = "FCCLIP_WEIGHTS"
UNTRAINED_SEED = 0  # random weights are seeded, so untrained runs are at least reproducible
RELEASED_MODEL = "convnext_large"
UNTRAINED_DEMO_MODEL = "fixture_tiny"


class StartupError(RuntimeError):
    """The node cannot start (no weights, model that does not load, unusable device ...)."""


def explicit_weights(weights: str) -> Path | None:
    """The weights file named by the ``weights`` value or ``$FCCLIP_WEIGHTS``; None when neither is set.

    A named file that does not exist is an error, not a silent fallback to the cache.
    """
    for source, value in (("weights", weights), (f"${WEIGHTS_ENV}", os.environ.get(WEIGHTS_ENV, ""))):
        value = value.strip()
        if not value:
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            raise StartupError(f"checkpoint not found: {path} (from {source})")
        return path
    return None


@dataclass(frozen=True)
class LoadedModel:
    predictor: Any  # fcclip_core.predictor.Predictor
    weights: str  # where the weights came from: a path, "weights cache", or "" (untrained)

    @property
    def untrained(self) -> bool:
        return not self.weights


def load_predictor(model_config: str, weights: str, device: str, *, allow_untrained: bool,
                   allow_download: bool = False, clip_weights: str = "",
                   input_short_side: int | None = None, max_long_side: int | None = None,
                   object_mask_threshold: float | None = None,
                   overlap_threshold: float | None = None, cpu_threads: int | None = None,
                   precision: str = "fp32", tf32: bool = False) -> LoadedModel:
    """Build the Predictor, turning every way this can fail into a StartupError with a clear message.

    Thresholds left at None keep the model config's values; ``cpu_threads`` None keeps torch's
    thread count (it is a process-wide setting). ``precision`` and ``tf32``: see
    ``fcclip_core.predictor.Predictor``.
    """
    import torch

    if cpu_threads:
        torch.set_num_threads(cpu_threads)
    from fcclip_core.config import load_model_config
    from fcclip_core.predictor import Predictor
    from fcclip_core.weights import WeightsError, WeightsNotFoundError, load_catalogue

    checkpoint = explicit_weights(weights)
    options = dict(device=device, input_short_side=input_short_side, max_long_side=max_long_side,
                   precision=precision, tf32=tf32)
    untrained_hint = "\n(for a smoke test without weights: allow_untrained:=true)"
    try:
        config = load_model_config(model_config)
        thresholds = {name: value for name, value in (("object_mask_threshold", object_mask_threshold),
                                                       ("overlap_threshold", overlap_threshold))
                      if value is not None}
        if thresholds:
            config = config.replace(inference=thresholds)
        missing = ""  # why there are no weights, when there are none
        if checkpoint is None and not any(e.config == config.name for e in load_catalogue().models.values()):
            missing = (f"no weights for model {config.name!r}: it is not a released model, so set the `weights` "
                       f"parameter (or ${WEIGHTS_ENV}) to its checkpoint")
        else:
            try:
                predictor = Predictor.from_config(config, checkpoint, clip_weights=clip_weights.strip() or None,
                                                  allow_download=allow_download, **options)
                return LoadedModel(predictor, str(checkpoint) if checkpoint else "weights cache")
            except WeightsNotFoundError as error:  # nothing in the cache; the message names the command
                if checkpoint is not None:
                    raise
                missing = str(error)
        if not allow_untrained:
            raise StartupError(missing + untrained_hint)
        predictor = Predictor.from_config(config, untrained=True, seed=UNTRAINED_SEED, **options)
        return LoadedModel(predictor, "")
    except StartupError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, WeightsError) as error:
        raise StartupError(f"could not load model {model_config!r}"
                           f"{f' with weights {checkpoint}' if checkpoint else ''}: {error}") from error


@dataclass(frozen=True)
class DemoModel:
    """What the demo runs: the released model when its weights are found, else a tiny untrained one."""

    model_config: str
    weights: Path | None  # an explicit file; None with untrained False: the weights cache
    untrained: bool

    def describe(self) -> str:
        if self.untrained:
            return f"tiny UNTRAINED model ({self.model_config}, random weights)"
        return f"released model {self.model_config} with weights {self.weights or 'from the weights cache'}"


def demo_model(weights: str = "") -> DemoModel:
    """The released model if its weights are given or cached (no download), else the tiny untrained one."""
    checkpoint = explicit_weights(weights)
    if checkpoint is not None:
        return DemoModel(RELEASED_MODEL, checkpoint, untrained=False)
    from fcclip_core.weights import WeightsError, resolve_weights

    try:
        resolved = resolve_weights(None, None, allow_download=False, progress=False)
    except WeightsError:
        return DemoModel(UNTRAINED_DEMO_MODEL, None, untrained=True)
    return DemoModel(resolved.config, None, untrained=False)


def inference_threads() -> int:
    """The CPU threads inference uses in this process (torch's intra-op thread count)."""
    import torch

    return torch.get_num_threads()
