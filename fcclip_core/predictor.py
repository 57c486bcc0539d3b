"""The Predictor: one FC-CLIP model, one active vocabulary, numpy images in, results out.

segment-anything's predictor caches the image embedding so that many prompts cost little; here
the expensive, reusable part is the text side, so text embeddings are cached per class name
(``TextEmbeddingCache``): switching to a vocabulary of classes seen before costs nothing.

Threading: ``prepare_vocabulary`` (slow: it runs the CLIP text tower for unseen names) may run on
any thread while ``predict`` runs on another; ``activate`` swaps the vocabulary atomically, and
``predict`` reads the active vocabulary once per image, so a result never mixes two vocabularies.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch

from fcclip_core.config import ModelConfig
from fcclip_core.memory import page_out
from fcclip_core.modeling.build import ConfigLike, build_empty_model, build_model, resolve_config
from fcclip_core.modeling.classification import TextClassifier
from fcclip_core.modeling.fcclip import FCCLIP
from fcclip_core.postprocess import PostprocessConfig, postprocess
from fcclip_core.preprocess import preprocess_images
from fcclip_core.results import InstanceResult, PanopticResult, SemanticResult
from fcclip_core.text_embeddings import TextEmbeddingCache
from fcclip_core.vocabulary import Vocabulary, coco_panoptic_vocabulary, parse_vocabulary

TASKS = frozenset({"semantic", "panoptic", "instance"})
# Refuse images whose side exceeds this (a corrupt header, not a camera): the network input
# is resized anyway, but the results are produced at the input resolution.
MAX_IMAGE_SIDE = 16384

PathLike = Union[str, Path]


@dataclass(frozen=True)
class PreparedVocabulary:
    """A vocabulary with its classifier computed, ready to be activated between two frames."""

    vocabulary: Vocabulary
    classifier: TextClassifier
    seconds: float  # time spent computing it (0 when every name was cached)


@dataclass(frozen=True)
class _ActiveVocabulary:
    version: int
    prepared: PreparedVocabulary


@dataclass
class Result:
    """Everything one forward pass produced for one image, at the image's own resolution."""

    image_hw: tuple[int, int]
    vocabulary: Vocabulary
    vocabulary_version: int
    semantic: Optional[SemanticResult]
    panoptic: Optional[PanopticResult]
    instances: Optional[InstanceResult]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage and "total"


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` picks the first GPU when there is one; ``cpu``, ``cuda``, ``cuda:N`` as given."""
    if isinstance(device, torch.device):
        return device
    text = str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(text)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available here")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return resolved


def _load_model(cfg: ModelConfig, weights: Optional[PathLike], clip_weights: Optional[PathLike],
                allow_download: bool) -> FCCLIP:
    """The model of ``cfg`` with its weights, found in the standard order (see ``from_config``)."""
    from fcclip_core.weights import load_catalogue, load_weights_into, resolve_weights

    released = any(entry.config == cfg.name for entry in load_catalogue().models.values())
    if released:
        resolved = resolve_weights(cfg.name, weights, allow_download, explicit_clip=clip_weights)
        model = build_empty_model(cfg)
        load_weights_into(model, resolved)
        return model
    if weights is None:
        raise ValueError(f"model config {cfg.name!r} is not a released model: give its weights file explicitly")
    return build_model(cfg, weights, clip_weights)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    height, width = image.shape[:2]
    if height < 1 or width < 1:
        raise ValueError(f"image is empty ({height}x{width})")
    if max(height, width) > MAX_IMAGE_SIDE:
        raise ValueError(f"image of {height}x{width} pixels exceeds the {MAX_IMAGE_SIDE}-pixel limit per side")
    return image


class Predictor:
    """Segment RGB images with an FC-CLIP model against the active vocabulary."""

    def __init__(
        self,
        model: FCCLIP,
        *,
        input_short_side: Optional[int] = None,
        max_long_side: Optional[int] = None,
        postprocess_config: Optional[PostprocessConfig] = None,
        text_cache: Optional[TextEmbeddingCache] = None,
        page_out_text_tower: bool = True,
    ) -> None:
        """``input_short_side``: short side of the network input (None: the config's test size,
        800 for the released model; 0: the image's native size). ``max_long_side`` caps the long
        side (None: the config's, 1333). ``page_out_text_tower``: after encoding new class names,
        let the kernel evict the text tower's weights from memory (see ``fcclip_core.memory``;
        effective when the weights were loaded memory-mapped from a file)."""
        self.model = model.eval()
        cfg = model.config
        input_cfg = cfg.input
        if input_short_side is not None:
            if input_short_side < 0:
                raise ValueError(f"input_short_side must be >= 0 (0 = native size), got {input_short_side}")
            input_cfg = dataclasses.replace(input_cfg, min_size_test=input_short_side or None)
        if max_long_side is not None:
            if max_long_side < 1:
                raise ValueError(f"max_long_side must be >= 1, got {max_long_side}")
            input_cfg = dataclasses.replace(input_cfg, max_size_test=max_long_side)
        self.input_config = input_cfg
        inference = cfg.inference
        self.postprocess_config = postprocess_config or PostprocessConfig(
            object_mask_threshold=inference.object_mask_threshold,
            overlap_threshold=inference.overlap_threshold,
            topk_per_image=inference.detections_per_image,
        )
        self.device = next(model.parameters()).device
        self.text_cache = text_cache or TextEmbeddingCache(model.clip_model, device=self.device)
        self.page_out_text_tower = page_out_text_tower
        self._active: Optional[_ActiveVocabulary] = None
        self._version_lock = threading.Lock()
        self._default_lock = threading.Lock()
        self._last_version = 0

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(
        cls,
        model_config: ConfigLike,
        weights: Optional[PathLike] = None,
        *,
        clip_weights: Optional[PathLike] = None,
        allow_download: bool = False,
        device: str | torch.device = "auto",
        untrained: bool = False,
        input_short_side: Optional[int] = None,
        max_long_side: Optional[int] = None,
        vocabulary: Optional[Vocabulary] = None,
        seed: int = 0,
    ) -> "Predictor":
        """Build the model of ``model_config`` (a shipped name or a YAML path) and load its weights.

        Weights are found as everywhere in the product (``fcclip_core.weights.resolve_weights``):
        ``weights`` when given (an FC-CLIP ``.pth`` or an exported ``.safetensors``;
        ``clip_weights`` completes a released checkpoint that lacks the CLIP text tower), else
        the weights cache, else a download when ``allow_download``, else an error that names
        the command to run. Configs outside the released catalogue need explicit ``weights``.
        ``untrained=True`` builds seeded random weights instead (demos and tests only: its masks
        mean nothing). ``vocabulary`` (default: COCO panoptic, set lazily) is activated.
        """
        cfg: ModelConfig = resolve_config(model_config)
        target = resolve_device(device)
        if untrained:
            if weights is not None:
                raise ValueError("give either weights or untrained=True, not both")
            torch.manual_seed(seed)
            model = build_model(cfg, device=target)
        else:
            model = _load_model(cfg, weights, clip_weights, allow_download).to(target).prepare_for_inference()
        predictor = cls(model, input_short_side=input_short_side, max_long_side=max_long_side)
        if vocabulary is not None:
            predictor.set_vocabulary(vocabulary)
        return predictor

    # ------------------------------------------------------------------ vocabulary

    def prepare_vocabulary(self, vocabulary: Vocabulary | Sequence[str], stuff: Iterable[str | int] = ()) -> PreparedVocabulary:
        """Compute the classifier of ``vocabulary`` without changing what ``predict`` uses.

        A list of strings is parsed in the official format ("label, synonym, ..."); ``stuff``
        names (or indices of) the entries that are stuff. Thread-safe; slow only for names
        never embedded before.
        """
        if not isinstance(vocabulary, Vocabulary):
            vocabulary = parse_vocabulary(list(vocabulary), stuff=stuff)
        start = time.perf_counter()
        encoded_before = self.text_cache.stats.names_encoded
        embedded = self.text_cache.embed(vocabulary)
        if self.page_out_text_tower and self.text_cache.stats.names_encoded != encoded_before:
            page_out(self.text_cache.tower_tensors())
        classifier = self.model.text_classifier(embedded.embeddings.to(self.device), embedded.synonym_counts,
                                                embedded.seen.to(self.device))
        return PreparedVocabulary(vocabulary, classifier, time.perf_counter() - start)

    def activate(self, prepared: PreparedVocabulary) -> int:
        """Make ``prepared`` the vocabulary of every following ``predict``; returns its version."""
        with self._version_lock:
            self._last_version += 1
            self._active = _ActiveVocabulary(self._last_version, prepared)
            return self._last_version

    def set_vocabulary(self, vocabulary: Vocabulary | Sequence[str], stuff: Iterable[str | int] = ()) -> int:
        """``prepare_vocabulary`` then ``activate``; returns the new version."""
        return self.activate(self.prepare_vocabulary(vocabulary, stuff))

    def _current(self) -> _ActiveVocabulary:
        active = self._active
        if active is None:
            # No vocabulary set yet: the official default, computed once even if two threads ask.
            with self._default_lock:
                if self._active is None:
                    self.set_vocabulary(coco_panoptic_vocabulary())
            active = self._active
        assert active is not None
        return active

    @property
    def vocabulary(self) -> Vocabulary:
        return self._current().prepared.vocabulary

    @property
    def vocabulary_version(self) -> int:
        return self._current().version

    # ------------------------------------------------------------------ run-time settings

    def retune(self, *, object_mask_threshold: Optional[float] = None, overlap_threshold: Optional[float] = None,
               ensemble_alpha: Optional[float] = None, ensemble_beta: Optional[float] = None,
               input_short_side: Optional[int] = None) -> None:
        """Change thresholds, ensemble weights or the input size of a loaded model (None: keep).

        Nothing is rebuilt: the next ``predict`` uses the new values. Call it from the thread
        that runs ``predict`` (between frames) so no frame sees half of a change.
        """
        for name, value in (("object_mask_threshold", object_mask_threshold),
                            ("overlap_threshold", overlap_threshold),
                            ("ensemble_alpha", ensemble_alpha), ("ensemble_beta", ensemble_beta)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if input_short_side is not None:
            if input_short_side < 0:
                raise ValueError(f"input_short_side must be >= 0 (0 = native size), got {input_short_side}")
            self.input_config = dataclasses.replace(self.input_config, min_size_test=input_short_side or None)
        post = {k: v for k, v in (("object_mask_threshold", object_mask_threshold),
                                  ("overlap_threshold", overlap_threshold)) if v is not None}
        if post:
            self.postprocess_config = dataclasses.replace(self.postprocess_config, **post)
        ensemble = {k: v for k, v in (("ensemble_alpha", ensemble_alpha), ("ensemble_beta", ensemble_beta))
                    if v is not None}
        if ensemble:
            self.model.config = self.model.config.replace(inference=ensemble)

    # ------------------------------------------------------------------ inference

    def predict(self, image: np.ndarray, tasks: Iterable[str] = TASKS) -> Result:
        """Segment one H x W x 3 uint8 RGB image; results come back at H x W.

        ``tasks``: any of "semantic", "panoptic", "instance" (all by default); the network runs
        once whatever is asked.
        """
        image = _check_image(image)
        wanted = frozenset(tasks)
        unknown = wanted - TASKS
        if unknown:
            raise ValueError(f"unknown tasks {sorted(unknown)}; choose from {sorted(TASKS)}")
        active = self._current()  # read once: this frame uses exactly this vocabulary
        vocabulary = active.prepared.vocabulary
        timings: dict[str, float] = {}
        start = time.perf_counter()
        batch = preprocess_images([image], self.input_config)
        images = batch.images.to(self.device)
        timings["preprocess"] = time.perf_counter() - start

        mark = time.perf_counter()
        output = self.model(images, active.prepared.classifier)
        timings["network"] = time.perf_counter() - mark

        mark = time.perf_counter()
        config = dataclasses.replace(
            self.postprocess_config,
            semantic_on="semantic" in wanted, panoptic_on="panoptic" in wanted, instance_on="instance" in wanted)
        semantic, panoptic, instances = (None, None, None)
        if wanted:
            with torch.inference_mode():
                semantic, panoptic, instances = postprocess(
                    output.mask_cls_logprobs[0], output.pred_masks[0], batch.padded_size, batch.image_sizes[0],
                    batch.original_sizes[0], vocabulary.thing_mask, vocabulary.labels, config)
        timings["postprocess"] = time.perf_counter() - mark
        timings["total"] = time.perf_counter() - start
        return Result(
            image_hw=batch.original_sizes[0],
            vocabulary=vocabulary,
            vocabulary_version=active.version,
            semantic=semantic,
            panoptic=panoptic,
            instances=instances,
            timings=timings,
        )
