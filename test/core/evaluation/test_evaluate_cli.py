"""fcclip-eval end to end: the tiny fixture model over synthetic datasets, run, resumed, scored."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from fcclip_core.evaluation import load_benchmark, load_class_list
from fcclip_core.evaluation.benchmarks import custom_benchmark
from fcclip_core.evaluation.label_files import read_label_map, read_panoptic_png, write_label_map
from fcclip_core.evaluation.loaders import load_dataset, semantic_from_panoptic
from fcclip_core.evaluation.runner import read_rgb, run_benchmark
from fcclip_core.evaluation.semantic_metrics import ConfusionMatrix
from fcclip_core.predictor import Predictor

from .synthetic_datasets import dataset_categories, write_panoptic_split, write_semantic_split


def fcclip_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fcclip_core.tools.evaluate", *map(str, args)],
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def custom_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("robot_data")
    paths = {"images": "images", "panoptic_root": "panoptic", "panoptic_json": "panoptic.json"}
    write_panoptic_split(root, paths, (5, 6, 9), (False, False, True), ["f1", "f2", "f3"], image_ids=[1, 2, 3])
    (root / "classes.txt").write_text("stuff: sky, clouds\nstuff: ground, soil\nbox, crate\n")
    return root


@pytest.fixture(scope="module")
def tiny_predictor(reference_root):
    return Predictor.from_config("fixture_tiny", reference_root / "tiny" / "weights.pth", device="cpu",
                                 input_short_side=128)


def model_args(reference_root):
    return ["--model-config", "fixture_tiny", "--weights", reference_root / "tiny" / "weights.pth",
            "--input-short-side", 128, "--device", "cpu", "--no-progress"]


def test_custom_data_run_resume_and_score(reference_root, custom_root, tmp_path, tiny_predictor):
    out = tmp_path / "run"
    common = ["run", "--dataset", "custom", "--root", custom_root, "--class-list", custom_root / "classes.txt",
              "-o", out, *model_args(reference_root)]
    first = fcclip_eval(*common, "--limit", 2)
    assert first.returncode == 0, first.stderr
    partial = json.loads((out / "report.json").read_text())
    assert (partial["images"], partial["dataset_images"], partial["complete"]) == (2, 3, False)
    assert "a subset of the images" in partial["note"] and "note:" in first.stdout
    assert partial["images_predicted_in_this_call"] == 2

    resumed = fcclip_eval(*common)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["images_predicted_in_this_call"] == 1 and report["images"] == 3
    assert partial["vocabulary_seconds"] > 0 and "s per image (median)" in resumed.stdout
    assert sorted(report["metrics"]) == ["panoptic", "semantic"]
    assert report["seconds_per_image_median"] > 0

    # An image interrupted after writing some files but before its done record is predicted again.
    (out / "predictions" / "done" / "f2.json").unlink()
    (out / "predictions" / "panoptic" / "f2.png").write_bytes(b"truncated")
    redone = fcclip_eval(*common)
    assert redone.returncode == 0, redone.stderr
    after = json.loads((out / "report.json").read_text())
    assert after["images_predicted_in_this_call"] == 1 and after["metrics"] == report["metrics"]

    # A fresh run gives exactly the same numbers (deterministic).
    again = fcclip_eval(*common[:-len(model_args(reference_root)) - 2], "-o", tmp_path / "again", *model_args(reference_root))
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "again" / "report.json").read_text())["metrics"] == report["metrics"]

    # `score` on the cached predictions reproduces the run's PQ.
    scored = fcclip_eval("score", "--format", "coco_panoptic", "--gt", custom_root / "panoptic.json",
                         "--gt-dir", custom_root / "panoptic", "--pred", out / "predictions" / "panoptic.json",
                         "--json", tmp_path / "pq.json")
    assert scored.returncode == 0, scored.stderr
    assert json.loads((tmp_path / "pq.json").read_text())["All"] == report["metrics"]["panoptic"]["All"]

    # Independently: the predictor in this process, GT labels from the panoptic PNGs, one matrix.
    dataset = load_dataset(custom_benchmark(custom_root, custom_root / "classes.txt"), custom_root,
                           load_class_list(custom_root / "classes.txt"))
    tiny_predictor.set_vocabulary(dataset.class_list.vocabulary)
    matrix = ConfusionMatrix(3)
    for sample in dataset.samples:
        annotation = sample.panoptic_annotation
        gt = semantic_from_panoptic(read_panoptic_png(custom_root / "panoptic" / annotation["file_name"]),
                                    annotation["segments_info"], dataset.contiguous_of)
        labels = tiny_predictor.predict(read_rgb(sample.image), tasks={"semantic"}).semantic.labels
        np.testing.assert_array_equal(read_label_map(out / "predictions" / "semantic" / f"{sample.key}.png"), labels)
        matrix.add(labels, gt)
    assert matrix.metrics()["mIoU"] == pytest.approx(report["metrics"]["semantic"]["mIoU"], abs=1e-9)

    # Other settings never mix into a cached run.
    clash = fcclip_eval(*common[:-1], "--input-short-side", 96)
    assert clash.returncode != 0 and "different run (changed: input_short_side)" in clash.stderr


def test_other_names_for_the_same_classes(reference_root, custom_root, tmp_path):
    (tmp_path / "names.txt").write_text("stuff: sky\nstuff: ground\nbox, crate, carton\n")
    done = fcclip_eval("run", "--dataset", "custom", "--root", custom_root, "--class-list", custom_root / "classes.txt",
                       "--vocabulary", tmp_path / "names.txt", "-o", tmp_path / "out", *model_args(reference_root))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["settings"]["vocabulary"].endswith("names.txt")
    (tmp_path / "two.txt").write_text("sky\nground\n")
    bad = fcclip_eval("run", "--dataset", "custom", "--root", custom_root, "--class-list", custom_root / "classes.txt",
                      "--vocabulary", tmp_path / "two.txt", "-o", tmp_path / "bad", *model_args(reference_root))
    assert bad.returncode != 0 and "has 2 classes but 'classes' has 3" in bad.stderr


def test_a_benchmark_layout_with_dataset_ids_and_instances(reference_root, tmp_path, tiny_predictor):
    """ADE20K-150 in its real layout (150-class official vocabulary): all three tasks, scored in ADE ids."""
    import dataclasses

    spec = load_benchmark("ade20k_150")
    class_list = load_class_list("ade20k_150")
    write_panoptic_split(tmp_path, dataclasses.asdict(spec.layout), (0, 2, 7), (False, False, True),
                         ["ADE_val_00000001", "ADE_val_00000002"], semantic_name=lambda k: f"{k}.png",
                         semantic_values=(0, 2, 7), instances=True, all_categories=dataset_categories(class_list))
    dataset = load_dataset(spec, tmp_path, class_list)
    tiny_predictor.postprocess_config = dataclasses.replace(tiny_predictor.postprocess_config,
                                                            object_mask_threshold=0.9, topk_per_image=5)
    report = run_benchmark(tiny_predictor, dataset, tmp_path / "out", tasks=spec.tasks, progress=False,
                           settings={"input_short_side": 128, "max_long_side": 1333})
    # The official eval thresholds replace whatever the predictor had.
    assert (tiny_predictor.postprocess_config.object_mask_threshold, tiny_predictor.postprocess_config.topk_per_image) \
        == (0.0, 100)
    assert report["settings"]["overlap_threshold"] == 0.8
    assert report["paper"] == {"PQ": 26.8, "AP": 16.8, "mIoU": 34.1}
    assert report["official_protocol"] is False and "non-official input size" in report["note"]
    instances = json.loads((tmp_path / "out" / "predictions" / "instances.json").read_text())
    things = {class_list.dataset_ids[i] for i, t in enumerate(class_list.vocabulary.thing_mask) if t}
    assert instances and {e["category_id"] for e in instances} <= things
    assert report["metrics"]["instance"]["detections"] == len(instances)
    panoptic = json.loads((tmp_path / "out" / "predictions" / "panoptic.json").read_text())
    assert {a["image_id"] for a in panoptic["annotations"]} == {"ADE_val_00000001", "ADE_val_00000002"}
    assert report["metrics"]["semantic"]["images"] == 2


def test_score_gives_100_for_the_ground_truth_itself(tmp_path):
    import dataclasses

    spec = load_benchmark("coco_panoptic")
    class_list = load_class_list("coco_panoptic")
    ids = (class_list.dataset_ids[119], class_list.dataset_ids[132], class_list.dataset_ids[0])
    paths = dataclasses.asdict(spec.layout)
    write_panoptic_split(tmp_path, paths, ids, (False, False, True), ["000000000001", "000000000002"],
                         semantic_name=lambda k: f"{k}.png", semantic_values=(119, 132, 0), instances=True,
                         image_ids=[1, 2], all_categories=dataset_categories(class_list))
    gt_json = tmp_path / paths["panoptic_json"]
    pq = fcclip_eval("score", "--format", "coco_panoptic", "--gt", gt_json, "--pred", gt_json,
                     "--gt-dir", tmp_path / paths["panoptic_root"], "--pred-dir", tmp_path / paths["panoptic_root"])
    assert pq.returncode == 0, pq.stderr
    assert "PQ           100.00" in pq.stdout
    # A prediction has a class everywhere: on the unlabelled GT pixels it counts nowhere.
    for gt_file in (tmp_path / paths["semantic_root"]).iterdir():
        labels = read_label_map(gt_file)
        write_label_map(tmp_path / "semantic_pred" / gt_file.name, np.where(labels == 255, 5, labels))
    semantic = fcclip_eval("score", "--format", "semantic_png", "--gt", tmp_path / paths["semantic_root"],
                           "--pred", tmp_path / "semantic_pred", "--class-list", "coco_panoptic")
    assert semantic.returncode == 0, semantic.stderr
    assert "mIoU         100.00" in semantic.stdout and "images: 2" in semantic.stdout
    gt_instances = json.loads((tmp_path / paths["instances_json"]).read_text())
    (tmp_path / "results.json").write_text(json.dumps([{**a, "score": 1.0} for a in gt_instances["annotations"]]))
    ap = fcclip_eval("score", "--format", "coco_instances", "--gt", tmp_path / paths["instances_json"],
                     "--pred", tmp_path / "results.json")
    assert ap.returncode == 0, ap.stderr
    assert "AP           100.00" in ap.stdout
    missing = fcclip_eval("score", "--format", "semantic_png", "--gt", tmp_path / "nope", "--pred", tmp_path,
                          "--num-classes", 3)
    assert missing.returncode != 0 and "fcclip-eval: not a folder" in missing.stderr


def test_list_names_every_benchmark_with_the_paper_numbers():
    done = fcclip_eval("list")
    assert done.returncode == 0, done.stderr
    assert "ade20k_150" in done.stdout and "PQ 26.8, AP 16.8, mIoU 34.1" in done.stdout
    assert len(done.stdout.strip().splitlines()) == 8


def test_bad_requests_get_clear_errors(tmp_path, custom_root):
    unknown = fcclip_eval("run", "--dataset", "nope", "--root", tmp_path, "-o", tmp_path / "o")
    assert unknown.returncode != 0 and "unknown dataset 'nope'" in unknown.stderr
    no_classes = fcclip_eval("run", "--dataset", "custom", "--root", custom_root, "-o", tmp_path / "o")
    assert no_classes.returncode != 0 and "--dataset custom needs --class-list" in no_classes.stderr
    no_data = fcclip_eval("run", "--dataset", "pascal_voc_21", "--root", tmp_path, "-o", tmp_path / "o")
    assert no_data.returncode != 0 and "missing image folder" in no_data.stderr


def test_ade20k_847_runs_with_its_repeated_labels_and_16_bit_labels(tmp_path, tiny_predictor):
    spec = load_benchmark("ade20k_847")
    write_semantic_split(tmp_path, spec.layout.images, spec.layout.semantic_root, ["a", "b"], values=(0, 2, 846),
                         ignore=65535, suffix=".tif")
    dataset = load_dataset(spec, tmp_path, load_class_list("ade20k_847"))
    report = run_benchmark(tiny_predictor, dataset, tmp_path / "out", tasks=["semantic"], progress=False)
    assert tiny_predictor.vocabulary.labels.count("pot") == 2
    matrix = ConfusionMatrix(847, ignore_label=65535)
    for sample in dataset.samples:
        matrix.add(read_label_map(tmp_path / "out" / "predictions" / "semantic" / f"{sample.key}.png"),
                   read_label_map(sample.semantic_gt))
    assert report["metrics"]["semantic"]["mIoU"] == pytest.approx(matrix.metrics()["mIoU"], abs=1e-9)
    assert len(report["metrics"]["semantic"]["per_class"]) == 847  # repeated labels keep separate rows
