"""Each standard layout, written small by the test, loads into the right samples and ids."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from fcclip_core.evaluation import load_benchmark, load_class_list
from fcclip_core.evaluation.benchmarks import custom_benchmark
from fcclip_core.evaluation.loaders import load_dataset, semantic_from_panoptic
from .synthetic_datasets import write_panoptic_split, write_semantic_split


def layout_paths(name: str) -> dict:
    return dataclasses.asdict(load_benchmark(name).layout)


def pick(name: str, stuff: int, stuff2: int, thing: int):
    class_list = load_class_list(name)
    ids = tuple(class_list.dataset_ids[i] for i in (stuff, stuff2, thing))
    flags = tuple(class_list.vocabulary.thing_mask[i] for i in (stuff, stuff2, thing))
    assert flags == (False, False, True)
    return class_list, ids, flags


@pytest.mark.parametrize("name,indices", [("coco_panoptic", (119, 132, 0)), ("ade20k_150", (0, 2, 7))])
def test_coco_and_ade20k_panoptic_layouts_with_instances(tmp_path, name, indices):
    class_list, ids, flags = pick(name, *indices)
    spec = load_benchmark(name)
    keys = ["000000000139", "000000000285"] if name == "coco_panoptic" else ["ADE_val_00000001", "ADE_val_00000002"]
    image_ids = [139, 285] if name == "coco_panoptic" else None
    write_panoptic_split(tmp_path, layout_paths(name), ids, flags, keys, semantic_name=lambda k: f"{k}.png",
                         semantic_values=indices, instances=True, image_ids=image_ids)
    dataset = load_dataset(spec, tmp_path, class_list)
    assert [s.key for s in dataset.samples] == keys
    first = dataset.samples[0]
    assert first.image == tmp_path / spec.layout.images / f"{keys[0]}.jpg"
    assert first.semantic_gt == tmp_path / spec.layout.semantic_root / f"{keys[0]}.png"
    assert first.image_id == (139 if name == "coco_panoptic" else keys[0])
    assert [s.instance_image_id for s in dataset.samples] == [1, 2]
    assert dataset.contiguous_of[ids[2]] == indices[2]


def test_cityscapes_layout_uses_city_folders_and_train_id_labels(tmp_path):
    class_list, ids, flags = pick("cityscapes", 0, 10, 11)
    spec = load_benchmark("cityscapes")
    keys = ["frankfurt_000000_000294", "lindau_000001_000019"]
    write_panoptic_split(tmp_path, layout_paths("cityscapes"), ids, flags, keys,
                         image_name=lambda k: f"{k.split('_')[0]}/{k}_leftImg8bit.png",
                         panoptic_name=lambda k: f"{k}_gtFine_panoptic.png",
                         semantic_name=lambda k: f"{k.split('_')[0]}/{k}_gtFine_labelTrainIds.png",
                         semantic_values=(0, 10, 11), image_ids=keys)
    dataset = load_dataset(spec, tmp_path, class_list)
    assert [s.key for s in dataset.samples] == keys
    assert dataset.samples[1].image == tmp_path / "cityscapes/leftImg8bit/val/lindau/lindau_000001_000019_leftImg8bit.png"
    assert dataset.samples[1].semantic_gt.name == "lindau_000001_000019_gtFine_labelTrainIds.png"
    assert ids == (7, 23, 24)  # Cityscapes label ids of road, sky, person


def test_mapillary_layout(tmp_path):
    class_list, ids, flags = pick("mapillary_vistas", 13, 27, 19)
    write_panoptic_split(tmp_path, layout_paths("mapillary_vistas"), ids, flags, ["aBc", "dEf"],
                         semantic_name=lambda k: f"{k}.png", semantic_values=(13, 27, 19), semantic_ignore=65)
    dataset = load_dataset(load_benchmark("mapillary_vistas"), tmp_path, class_list)
    assert len(dataset.samples) == 2 and dataset.spec.layout.semantic_ignore == 65
    assert ids == (14, 28, 20)


@pytest.mark.parametrize("name,suffix,ignore", [("ade20k_847", ".tif", 65535), ("pascal_ctx_459", ".tif", 65535),
                                                ("pascal_ctx_59", ".png", 255), ("pascal_voc_21", ".png", 255)])
def test_semantic_layouts_pair_images_and_labels_by_name(tmp_path, name, suffix, ignore):
    spec = load_benchmark(name)
    write_semantic_split(tmp_path, spec.layout.images, spec.layout.semantic_root, ["b", "a"], values=(3, 4, 5),
                         ignore=ignore, suffix=suffix)
    dataset = load_dataset(spec, tmp_path, load_class_list(name))
    assert [s.key for s in dataset.samples] == ["a", "b"]
    assert dataset.samples[0].semantic_gt.suffix == suffix
    assert spec.layout.semantic_ignore == ignore


def test_missing_files_are_named(tmp_path):
    class_list, ids, flags = pick("ade20k_150", 0, 2, 7)
    spec = load_benchmark("ade20k_150")
    with pytest.raises(ValueError, match="missing image folder"):
        load_dataset(spec, tmp_path, class_list)
    write_panoptic_split(tmp_path, layout_paths("ade20k_150"), ids, flags, ["x", "y"],
                         semantic_name=lambda k: f"{k}.png", instances=True)
    (tmp_path / spec.layout.images / "y.jpg").unlink()
    with pytest.raises(ValueError, match="missing image of y"):
        load_dataset(spec, tmp_path, class_list)


def test_custom_panoptic_data_takes_category_ids_from_its_json(tmp_path):
    paths = {"images": "images", "panoptic_root": "panoptic", "panoptic_json": "panoptic.json"}
    doc = write_panoptic_split(tmp_path, paths, (5, 6, 9), (False, False, True), ["f1", "f2"])
    (tmp_path / "classes.txt").write_text("stuff: wall\nstuff: floor\nmug, cup\n")
    spec = custom_benchmark(tmp_path, tmp_path / "classes.txt")
    assert spec.tasks == ("panoptic", "semantic")
    dataset = load_dataset(spec, tmp_path, load_class_list(spec.class_list))
    assert dataset.class_list.dataset_ids == (5, 6, 9)
    annotation = doc["annotations"][0]
    ids = np.array([[0, annotation["segments_info"][0]["id"], annotation["segments_info"][2]["id"]]])
    labels = semantic_from_panoptic(ids, annotation["segments_info"], dataset.contiguous_of)
    assert labels.tolist() == [[255, 0, 2]]
    (tmp_path / "classes.txt").write_text("wall\nfloor\n")
    with pytest.raises(ValueError, match="3 categories but the class list has 2"):
        load_dataset(spec, tmp_path, load_class_list(tmp_path / "classes.txt"))
    json.loads((tmp_path / "panoptic.json").read_text())  # still valid
