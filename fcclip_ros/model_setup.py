"""Where the node's model comes from: the checkpoint lookup and the Predictor it builds.

Kept apart from the node so the demo runner and the node find weights the same way, and so
the lookup has exactly one place to grow (the weight cache of ``fcclip-weights``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHTS_ENV = "FCCLIP_WEIGHTS"
UNTRAINED_SEED = 0  # random weights are seeded, so untrained runs are at least reproducible


class StartupError(RuntimeError):
    """The node cannot start (no weights, model that does not load, unusable device ...)."""


def resolve_weights(weights: str, model_config: str) -> Path | None:
    """The checkpoint to load for ``model_config``, or None when none is available.

    Order: the explicit ``weights`` value (parameter or argument), then ``$FCCLIP_WEIGHTS``.
    An explicit path that does not exist is an error, not a silent fallback.
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
    weights: Path | None  # None: untrained (random weights)


def load_predictor(model_config: str, weights: str, device: str, *, allow_untrained: bool,
                   input_short_side: int | None = None, max_long_side: int | None = None,
                   object_mask_threshold: float | None = None,
                   overlap_threshold: float | None = None) -> LoadedModel:
    """Build the Predictor, turning every way this can fail into a StartupError with a clear message.

    Thresholds left at None keep the model config's values.
    """
    from fcclip_core.config import load_model_config
    from fcclip_core.predictor import Predictor

    checkpoint = resolve_weights(weights, model_config)
    if checkpoint is None and not allow_untrained:
        raise StartupError(
            f"no weights for model {model_config!r}: set the `weights` parameter to a checkpoint file "
            f"or ${WEIGHTS_ENV}; for a smoke test without weights set allow_untrained:=true")
    try:
        config = load_model_config(model_config)
        thresholds = {name: value for name, value in (("object_mask_threshold", object_mask_threshold),
                                                       ("overlap_threshold", overlap_threshold))
                      if value is not None}
        if thresholds:
            config = config.replace(inference=thresholds)
        predictor = Predictor.from_config(
            config, checkpoint, device=device, untrained=checkpoint is None, seed=UNTRAINED_SEED,
            input_short_side=input_short_side, max_long_side=max_long_side)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise StartupError(f"could not load model {model_config!r}"
                           f"{f' with weights {checkpoint}' if checkpoint else ''}: {error}") from error
    return LoadedModel(predictor=predictor, weights=checkpoint)


RELEASED_MODEL = "convnext_large"
UNTRAINED_DEMO_MODEL = "fixture_tiny"


@dataclass(frozen=True)
class DemoModel:
    """What the demo runs: the released model when its weights are found, else a tiny untrained one."""

    model_config: str
    weights: Path | None

    @property
    def untrained(self) -> bool:
        return self.weights is None


def demo_model(weights: str = "") -> DemoModel:
    checkpoint = resolve_weights(weights, RELEASED_MODEL)
    if checkpoint is None:
        return DemoModel(UNTRAINED_DEMO_MODEL, None)
    return DemoModel(RELEASED_MODEL, checkpoint)
