"""Evaluation: the official FC-CLIP test protocol on standard datasets, and scoring of any
predictions on disk (COCO panoptic, semantic label PNGs, COCO instance results).

ROS-free. The metrics are computed as detectron2's evaluators compute them: PQ/SQ/RQ with the
panopticapi rules, mIoU / fwIoU / mACC / pACC from one confusion matrix, mask AP with
pycocotools. ``fcclip-eval`` (``fcclip_core.tools.evaluate``) is the command-line front end.
"""
from fcclip_core.evaluation.benchmarks import BenchmarkSpec, benchmark_names, load_benchmark
from fcclip_core.evaluation.class_lists import EvalClassList, load_class_list
from fcclip_core.evaluation.instance_ap import score_coco_instances
from fcclip_core.evaluation.panoptic_quality import PanopticQuality, score_coco_panoptic
from fcclip_core.evaluation.semantic_metrics import ConfusionMatrix, score_semantic_pngs

__all__ = [
    "BenchmarkSpec", "ConfusionMatrix", "EvalClassList", "PanopticQuality", "benchmark_names",
    "load_benchmark", "load_class_list", "score_coco_instances", "score_coco_panoptic", "score_semantic_pngs",
]
