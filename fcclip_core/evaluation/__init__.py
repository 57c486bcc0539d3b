"""Evaluation: the official FC-CLIP test protocol on standard datasets, and scoring of any
predictions on disk (COCO panoptic, semantic label PNGs, COCO instance results).

ROS-free. The metrics are computed as detectron2's evaluators compute them: PQ/SQ/RQ with the
panopticapi rules, mIoU / fwIoU / mACC / pACC from one confusion matrix, mask AP with
pycocotools. ``fcclip-eval`` (``fcclip_core.tools.evaluate``) is the command-line front end.
"""
from fcclip_core.evaluation.benchmarks import BenchmarkSpec, benchmark_names, load_benchmark
from fcclip_core.evaluation.class_lists import EvalClassList, load_class_list

__all__ = ["BenchmarkSpec", "EvalClassList", "benchmark_names", "load_benchmark", "load_class_list"]
