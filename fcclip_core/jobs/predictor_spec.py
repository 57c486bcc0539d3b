"""What a worker needs to build its own Predictor: plain, picklable data (sent to Ray actors)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional


@dataclass(frozen=True)
class PredictorSpec:
    """Arguments of ``Predictor.from_config`` plus the CPU thread count of the process."""

    model_config: str
    weights: Optional[Path] = None
    clip_weights: Optional[Path] = None
    allow_download: bool = False
    device: str = "auto"
    untrained: bool = False
    input_short_side: Optional[int] = None
    max_long_side: Optional[int] = None
    vocabulary: Any = None  # a fcclip_core.vocabulary.Vocabulary, None = COCO panoptic
    threads: Optional[int] = None
    precision: str = "fp32"  # fp32 | bf16 | fp16 | auto (fcclip_core.precision)
    tf32: bool = False
    compile_mode: str = "off"

    def output_key(self) -> str:
        """What decides the outputs (model, weights, input size, vocabulary, precision), not
        where or how fast they are computed: parts written under another key are not resumed."""
        return repr((self.model_config, str(self.weights), self.untrained, self.input_short_side,
                     self.max_long_side, self.vocabulary, self.precision, self.tf32))

    def build(self) -> Any:
        """A ready Predictor (vocabulary encoded) in this process."""
        import torch

        from fcclip_core.predictor import Predictor
        from fcclip_core.vocabulary import coco_panoptic_vocabulary

        if self.threads:
            torch.set_num_threads(self.threads)
        predictor = Predictor.from_config(
            self.model_config, self.weights, clip_weights=self.clip_weights, allow_download=self.allow_download,
            device=self.device, untrained=self.untrained, input_short_side=self.input_short_side,
            max_long_side=self.max_long_side, vocabulary=self.vocabulary or coco_panoptic_vocabulary(),
            precision=self.precision, tf32=self.tf32, compile_mode=self.compile_mode)
        return predictor
