"""Run a model over an evaluation dataset, caching every image's predictions, then score them.

The output folder holds ``run.json`` (what was run: a later call with other settings refuses to
mix its predictions in), the per-image predictions (``PredictionStore``) and ``report.json``.
A second call with the same settings skips the images already done: an interrupted run resumes.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image, ImageOps

from fcclip_core.evaluation.benchmarks import BenchmarkSpec
from fcclip_core.evaluation.instance_ap import score_coco_instances
from fcclip_core.evaluation.label_files import read_label_map, read_panoptic_png
from fcclip_core.evaluation.loaders import EvalDataset, EvalSample, semantic_from_panoptic
from fcclip_core.evaluation.panoptic_quality import score_coco_panoptic
from fcclip_core.evaluation.prediction_store import PredictionStore
from fcclip_core.evaluation.report import build_report
from fcclip_core.evaluation.semantic_metrics import ConfusionMatrix


def read_rgb(path: Path) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB, EXIF orientation applied (as detectron2 reads it)."""
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def apply_test_settings(predictor: Any, spec: BenchmarkSpec) -> dict:
    """Give ``predictor`` the benchmark's post-processing thresholds; returns them for the report."""
    predictor.postprocess_config = dataclasses.replace(
        predictor.postprocess_config, object_mask_threshold=spec.object_mask_threshold,
        overlap_threshold=spec.overlap_threshold, topk_per_image=spec.detections_per_image)
    return {"object_mask_threshold": spec.object_mask_threshold, "overlap_threshold": spec.overlap_threshold,
            "detections_per_image": spec.detections_per_image}


def run_benchmark(predictor: Any, dataset: EvalDataset, output: str | Path, *, tasks: Sequence[str],
                  limit: Optional[int] = None, settings: Optional[dict] = None, progress: bool = True) -> dict:
    """Predict (resuming) and score the first ``limit`` samples; writes and returns the report."""
    unknown = set(tasks) - set(dataset.spec.tasks)
    if unknown or not tasks:
        raise ValueError(f"{dataset.spec.name} evaluates {list(dataset.spec.tasks)}; cannot do {sorted(unknown)}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    output = Path(output)
    thresholds = apply_test_settings(predictor, dataset.spec)
    manifest = {"dataset": dataset.spec.name, "root": str(dataset.root.resolve()),
                "vocabulary_key": dataset.class_list.vocabulary.key, "tasks": sorted(tasks), **thresholds,
                **(settings or {})}
    _claim_output(output, manifest)
    samples = dataset.samples[:limit] if limit else dataset.samples
    store = PredictionStore(output / "predictions")
    seconds, vocabulary_seconds = _predict_missing(predictor, dataset, samples, store, tasks, progress)
    metrics = score_predictions(dataset, store, samples, tasks)
    done_seconds = [store.record(s.key)["seconds"] for s in samples]
    report = build_report(dataset, metrics, manifest, images=len(samples), total_images=len(dataset.samples),
                          seconds_per_image=float(np.median(done_seconds)) if done_seconds else None,
                          predicted_now=len(seconds), vocabulary_seconds=vocabulary_seconds)
    (output / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def _claim_output(output: Path, manifest: dict) -> None:
    output.mkdir(parents=True, exist_ok=True)
    path = output / "run.json"
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous != manifest:
            changed = sorted(k for k in set(previous) | set(manifest) if previous.get(k) != manifest.get(k))
            raise ValueError(f"{output} holds predictions of a different run (changed: {', '.join(changed)}); "
                             "use another --output folder or delete this one")
    else:
        path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def _predict_missing(predictor: Any, dataset: EvalDataset, samples: Sequence[EvalSample], store: PredictionStore,
                     tasks: Sequence[str], progress: bool) -> tuple[list[float], float]:
    """Predict the samples without a done record; per-image seconds and the text-encoding seconds."""
    from tqdm import tqdm

    todo = [s for s in samples if not store.is_done(s.key)]
    vocabulary_seconds = 0.0
    if todo:
        prepared = predictor.prepare_vocabulary(dataset.class_list.vocabulary)
        predictor.activate(prepared)
        vocabulary_seconds = prepared.seconds
    wanted = set(tasks)
    seconds = []
    bar = tqdm(total=len(samples), initial=len(samples) - len(todo), unit="img", disable=not progress,
               desc=dataset.spec.name, dynamic_ncols=True)
    with bar:
        for sample in todo:
            start = time.perf_counter()
            result = predictor.predict(read_rgb(sample.image), tasks=wanted)
            elapsed = time.perf_counter() - start
            store.save(sample.key, sample.image_id, dataset_ids=dataset.class_list.dataset_ids,
                       panoptic=result.panoptic if "panoptic" in wanted else None,
                       semantic=result.semantic.labels if "semantic" in wanted else None,
                       instances=result.instances if "instance" in wanted else None,
                       instance_image_id=sample.instance_image_id, seconds=elapsed)
            seconds.append(elapsed)
            bar.update(1)
    return seconds, vocabulary_seconds


def score_predictions(dataset: EvalDataset, store: PredictionStore, samples: Sequence[EvalSample],
                      tasks: Sequence[str]) -> dict[str, dict]:
    """Metrics of the cached predictions of ``samples``, per task."""
    keys = [s.key for s in samples]
    files = store.write_combined(keys, panoptic="panoptic" in tasks, instances="instance" in tasks)
    metrics: dict[str, dict] = {}
    if "panoptic" in tasks:
        metrics["panoptic"] = score_coco_panoptic(dataset.panoptic_json, dataset.panoptic_root, files["panoptic_json"],
                                                  store.folder / "panoptic", image_ids=[s.image_id for s in samples])
    if "instance" in tasks:
        metrics["instance"] = score_coco_instances(dataset.instances_json, files["instances_json"],
                                                   image_ids=[s.instance_image_id for s in samples])
    if "semantic" in tasks:
        metrics["semantic"] = _score_semantic(dataset, store, samples)
    return metrics


def _score_semantic(dataset: EvalDataset, store: PredictionStore, samples: Sequence[EvalSample]) -> dict:
    vocabulary = dataset.class_list.vocabulary
    matrix = ConfusionMatrix(len(vocabulary), dataset.spec.layout.semantic_ignore)
    for sample in samples:
        pred = read_label_map(store.folder / "semantic" / f"{sample.key}.png")
        if sample.semantic_gt is not None:
            gt = read_label_map(sample.semantic_gt)
        else:
            annotation = sample.panoptic_annotation
            gt = semantic_from_panoptic(read_panoptic_png(dataset.panoptic_root / annotation["file_name"]),
                                        annotation["segments_info"], dataset.contiguous_of,
                                        dataset.spec.layout.semantic_ignore)
        matrix.add(pred, gt)
    result = matrix.metrics(vocabulary.labels if len(set(vocabulary.labels)) == len(vocabulary)
                            else [entry.text for entry in vocabulary.entries])
    result["images"] = len(samples)
    return result
