"""The shipped evaluation class lists are the official ones: counts, names and synonyms, and the
seen/unseen split, checked against the configuration recorded from the official code."""
from __future__ import annotations

import json

import pytest

from fcclip_core.evaluation import benchmark_names, load_benchmark, load_class_list
from fcclip_core.evaluation.class_lists import packaged_class_list_names
from fcclip_core.vocabulary import parse_vocabulary

# Our class list -> the official dataset whose vocabulary the reference config recorded.
OFFICIAL_NAME = {
    "coco_panoptic": "openvocab_coco_2017_val_panoptic_with_sem_seg",
    "ade20k_150": "openvocab_ade20k_panoptic_val",
    "ade20k_847": "openvocab_ade20k_full_sem_seg_val",
    "cityscapes": "openvocab_cityscapes_fine_panoptic_val",
    "mapillary_vistas": "openvocab_mapillary_vistas_panoptic_val",
    "pascal_voc_21": "openvocab_pascal21_sem_seg_val",
    "pascal_ctx_459": "openvocab_pascal_ctx459_sem_seg_val",
    "pascal_ctx_59": "openvocab_pascal_ctx59_sem_seg_val",
}


@pytest.fixture(scope="module")
def official(reference_root):
    config = json.loads((reference_root / "config_convnext_large.json").read_text())
    return config["category_overlapping_masks_per_eval_dataset"]


@pytest.mark.parametrize("name", sorted(OFFICIAL_NAME))
def test_class_list_matches_the_official_vocabulary(name, official):
    recorded = official[OFFICIAL_NAME[name]]
    class_list = load_class_list(name)
    vocabulary = class_list.vocabulary
    assert len(vocabulary) == recorded["num_classes"]
    assert [entry.text for entry in vocabulary.entries] == recorded["class_names"]
    assert list(vocabulary.synonym_counts) == recorded["num_synonyms_per_class"]
    assert list(vocabulary.seen_mask()) == [bool(x) for x in recorded["category_overlapping_mask"]]
    assert len(class_list.dataset_ids) == len(vocabulary)


def test_every_official_list_is_shipped_and_used_by_a_benchmark():
    assert sorted(packaged_class_list_names()) == sorted(OFFICIAL_NAME)
    assert {load_benchmark(name).class_list for name in benchmark_names()} == set(OFFICIAL_NAME)


def test_thing_counts_and_dataset_ids_of_the_panoptic_datasets():
    expected = {"coco_panoptic": 80, "ade20k_150": 100, "cityscapes": 8, "mapillary_vistas": 37}
    for name, things in expected.items():
        assert sum(load_class_list(name).vocabulary.thing_mask) == things
    cityscapes = load_class_list("cityscapes")
    assert cityscapes.dataset_ids[:3] == (7, 8, 11) and cityscapes.dataset_ids[-1] == 33
    assert load_class_list("ade20k_150").dataset_ids == tuple(range(150))
    assert load_class_list("mapillary_vistas").dataset_ids == tuple(range(1, 66))


def test_ade20k_847_keeps_its_repeated_labels_while_user_vocabularies_refuse_them():
    vocabulary = load_class_list("ade20k_847").vocabulary
    labels = vocabulary.labels
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    assert repeated == ["bag", "basket", "control panel", "grill", "patio", "pedestal", "pier", "pipe", "pot"]
    with pytest.raises(ValueError, match="same label"):
        parse_vocabulary([entry.text for entry in vocabulary.entries])


def test_renaming_keeps_ids_and_thing_flags_and_checks_the_count(tmp_path):
    cityscapes = load_class_list("cityscapes")
    names = [f"class {i}, thing {i}" for i in range(19)]
    renamed = cityscapes.with_names(parse_vocabulary(names))
    assert renamed.vocabulary.names[:2] == ("class 0", "thing 0")
    assert renamed.vocabulary.thing_mask == cityscapes.vocabulary.thing_mask
    assert renamed.dataset_ids == cityscapes.dataset_ids
    with pytest.raises(ValueError, match="has 2 classes but 'cityscapes' has 19"):
        cityscapes.with_names(parse_vocabulary(["a", "b"]))


def test_a_class_list_file_with_dataset_ids(tmp_path):
    path = tmp_path / "robot.json"
    path.write_text(json.dumps({"classes": ["floor", "cup, mug"], "stuff": ["floor"], "dataset_ids": [3, 9]}))
    class_list = load_class_list(path)
    assert class_list.dataset_ids == (3, 9) and class_list.vocabulary.thing_mask == (False, True)
    path.write_text(json.dumps({"classes": ["floor", "cup"], "dataset_ids": [3]}))
    with pytest.raises(ValueError, match="1 dataset ids for 2 classes"):
        load_class_list(path)
    with pytest.raises(ValueError, match="no class list 'nope'"):
        load_class_list("nope")
