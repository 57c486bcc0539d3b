"""Vocabulary parsing, validation, files and the seen rule, against the official reference data."""
from __future__ import annotations

import json

import pytest
import yaml

from fcclip_core.vocabulary import (PROMPT_TEMPLATES, ClassEntry, Vocabulary, coco_panoptic_vocabulary,
                                    load_vocabulary_file, parse_vocabulary, split_synonyms)


@pytest.fixture(scope="module")
def official(reference_root):
    return json.loads((reference_root / "config_convnext_large.json").read_text())


@pytest.fixture(scope="module")
def tiny_vocab(reference_root):
    return json.loads((reference_root / "tiny" / "vocab.json").read_text())


def eval_vocabularies(official):
    return official["category_overlapping_masks_per_eval_dataset"].items()


# --- splitting and prompts -----------------------------------------------------------------------


def test_templates_are_the_official_ones(official):
    assert list(PROMPT_TEMPLATES) == official["text"]["templates"]


def test_split_matches_the_official_split_of_the_fixture(tiny_vocab):
    vocabulary = parse_vocabulary(tiny_vocab["stuff_classes"], isthing=tiny_vocab["isthing"])
    assert [list(e.names) for e in vocabulary.entries] == tiny_vocab["synonyms_after_official_split"]
    assert list(vocabulary.synonym_counts) == tiny_vocab["num_templates_per_class"]
    assert vocabulary.entries[8].names == ("laptop computer", "laptop")  # ", " joins like ","
    assert vocabulary.labels[8] == "laptop computer"


def test_split_keeps_what_the_official_split_keeps():
    assert split_synonyms("a, b,c") == ("a", "b", "c")
    assert split_synonyms("a ,b") == ("a ", "b")  # only ", " is special
    assert split_synonyms("bag,bag") == ("bag", "bag")  # repeats stay (pascal21 has one)


def test_synonym_counts_and_prompt_counts_of_all_eval_vocabularies(official):
    for name, info in eval_vocabularies(official):
        vocabulary = parse_vocabulary(info["class_names"], allow_duplicate_labels=True)
        assert list(vocabulary.synonym_counts) == info["num_synonyms_per_class"], name
        assert len(vocabulary.prompts()) == info["num_prompts"], name


def test_prompts_equal_the_official_prompts(reference_root, tiny_vocab):
    torch = pytest.importorskip("torch")
    expected = torch.load(reference_root / "tiny" / "expected.pt", weights_only=True)["text"]["prompts"]
    assert parse_vocabulary(tiny_vocab["stuff_classes"]).prompts() == expected


# --- seen rule -----------------------------------------------------------------------------------


def test_seen_mask_of_the_fixture_vocabulary(tiny_vocab):
    vocabulary = parse_vocabulary(tiny_vocab["stuff_classes"])
    assert [int(s) for s in vocabulary.seen_mask()] == tiny_vocab["category_overlapping_mask"]


def test_seen_masks_reproduce_every_official_eval_vocabulary(official):
    for name, info in eval_vocabularies(official):
        vocabulary = parse_vocabulary(info["class_names"], allow_duplicate_labels=True)
        mask = [int(s) for s in vocabulary.seen_mask()]
        assert mask == info["category_overlapping_mask"], name
        assert sum(mask) == info["num_seen"], name


def test_seen_is_exact_name_equality_against_the_given_training_vocabulary():
    train = parse_vocabulary(["dog,puppy", "sky"])
    test = parse_vocabulary(["puppy,pup", "Sky", "skyline", "cat"])
    assert test.seen_mask(train) == (True, False, False, False)


# --- COCO panoptic data file ---------------------------------------------------------------------


def test_coco_panoptic_vocabulary_is_the_official_training_vocabulary(official):
    coco = coco_panoptic_vocabulary()
    train = official["train_vocabulary"]
    assert [e.text for e in coco.entries] == train["stuff_classes"]
    assert [i for i, thing in enumerate(coco.thing_mask) if thing] == train["thing_contiguous_ids"]
    assert list(coco.synonym_counts) == official["coco_eval_vocabulary"]["num_synonyms_per_class"]
    assert len(coco.prompts()) == official["coco_eval_vocabulary"]["num_prompts"]
    assert all(coco.seen_mask())


def test_coco_panoptic_data_file_lists_coco_category_ids():
    from fcclip_core.vocabulary import COCO_PANOPTIC_FILE

    data = json.loads(COCO_PANOPTIC_FILE.read_text())
    ids = data["coco_category_ids"]
    assert len(ids) == len(data["classes"]) == 133
    assert ids == sorted(ids) and ids[0] == 1 and ids[79] == 90  # things 1..90, then stuff


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("classes, message", [
    ([], "empty"),
    ("cat,dog", "list of class strings"),
    (["cat", ""], "empty name"),
    (["cat,,kitty"], "empty name"),
    (["cat,"], "empty name"),
    (["cat,  kitty"], "whitespace"),
    (["cat ,kitty"], "whitespace"),
    (["cat\nkitty"], "control character U\\+000A at position 3"),
    (["cup", "mug\x7f"], "class 1 .*control character U\\+007F at position 3"),
    (["cat", "cat"], "repeats class 0"),
    (["dog,puppy", "dog,hound"], "same label"),
    (["x" * 121], "characters"),
    ([",".join(f"n{i}" for i in range(129))], "names"),
    ([3], "not a string"),
])
def test_bad_class_lists_are_rejected_with_a_reason(classes, message):
    with pytest.raises(ValueError, match=message):
        parse_vocabulary(classes)


def test_valid_unicode_is_accepted_and_normalised():
    family = "family \U0001F468\u200d\U0001F469\u200d\U0001F467"  # emoji joined by zero-width joiners
    vocabulary = parse_vocabulary(["coffee\u00a0cup", family, "  caf\u0065\u0301 table \t", "\u202fsign"])
    assert vocabulary.labels == ("coffee\u00a0cup", family, "caf\u00e9 table", "sign")
    # NFC: the decomposed and the precomposed spelling are the same class.
    with pytest.raises(ValueError, match="repeats class 0"):
        parse_vocabulary(["caf\u00e9", "cafe\u0301"])


def test_limits_are_arguments():
    with pytest.raises(ValueError, match="3 classes exceed the limit of 2"):
        parse_vocabulary(["a", "b", "c"], max_classes=2)
    with pytest.raises(ValueError, match="limit of 4"):
        parse_vocabulary(["kitten"], max_name_chars=4)
    assert parse_vocabulary(["dog,puppy", "dog,hound"], allow_duplicate_labels=True).labels == ("dog", "dog")


def test_stuff_is_given_by_index_entry_text_or_label():
    vocabulary = parse_vocabulary(["cat", "sky,clouds", "grass, lawn", "road"], stuff=[1, "grass, lawn", "road"])
    assert vocabulary.thing_mask == (True, False, False, False)
    assert parse_vocabulary(["cat", "sky,clouds"], stuff=["sky"]).thing_mask == (True, False)


@pytest.mark.parametrize("stuff, message", [
    (["tree"], "matches no class"),
    ([5], "outside"),
    ([True], "class indices or class strings"),
])
def test_bad_stuff_entries_are_rejected(stuff, message):
    with pytest.raises(ValueError, match=message):
        parse_vocabulary(["cat", "sky"], stuff=stuff)


def test_ambiguous_stuff_label_and_conflicting_flags_are_rejected():
    with pytest.raises(ValueError, match="ambiguous"):
        parse_vocabulary(["dog,puppy", "dog,hound"], stuff=["dog"], allow_duplicate_labels=True)
    with pytest.raises(ValueError, match="either"):
        parse_vocabulary(["cat", "sky"], stuff=["sky"], isthing=[True, False])
    with pytest.raises(ValueError, match="one bool per class"):
        parse_vocabulary(["cat", "sky"], isthing=[True])


def test_vocabulary_needs_entries():
    with pytest.raises(ValueError, match="at least one class"):
        Vocabulary(())


# --- identity ------------------------------------------------------------------------------------


def test_key_identifies_ordered_entries_and_flags():
    a = parse_vocabulary(["cat", "sky"], stuff=["sky"])
    assert a.key == parse_vocabulary(["cat", "sky"], stuff=[1]).key
    assert len(a.key) == 64 and int(a.key, 16) >= 0
    assert a.key != parse_vocabulary(["sky", "cat"], stuff=["sky"]).key
    assert a.key != parse_vocabulary(["cat", "sky"]).key
    assert a.key != parse_vocabulary(["cat", "sky, clouds"], stuff=["sky"]).key
    assert a == Vocabulary((ClassEntry("cat", ("cat",), True), ClassEntry("sky", ("sky",), False)))


# --- files ---------------------------------------------------------------------------------------


def test_text_file_with_markers_and_comments(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("# my robot's classes\ncat,cats, kitty\n\nstuff: sky,clouds\nthing: mug,cup\nStuff:floor\n")
    vocabulary = load_vocabulary_file(path)
    assert [e.text for e in vocabulary.entries] == ["cat,cats, kitty", "sky,clouds", "mug,cup", "floor"]
    assert vocabulary.thing_mask == (True, False, True, False)
    assert vocabulary.entries[0].names == ("cat", "cats", "kitty")


def test_json_and_yaml_files(tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(["cat", {"name": "sky,clouds", "isthing": False}]))
    mapping = tmp_path / "state.yaml"
    mapping.write_text(yaml.safe_dump({"version": 3, "classes": ["cat", "sky,clouds"], "stuff": ["sky"]}))
    expected = parse_vocabulary(["cat", "sky,clouds"], stuff=[1])
    assert load_vocabulary_file(listed) == expected
    assert load_vocabulary_file(mapping) == expected


def test_coco_vocabulary_survives_a_round_trip_through_yaml(tmp_path):
    coco = coco_panoptic_vocabulary()
    path = tmp_path / "coco.yml"
    path.write_text(yaml.safe_dump({"classes": [{"name": e.text, "isthing": e.isthing} for e in coco.entries]}))
    assert load_vocabulary_file(path) == coco


@pytest.mark.parametrize("name, content, message", [
    ("bad.json", "[\"cat\",", "not valid JSON"),
    ("bad.yaml", "classes: [cat", "not valid YAML"),
    ("keys.json", json.dumps([{"label": "cat"}]), "mapping with `name`"),
    ("flag.json", json.dumps([{"name": "cat", "isthing": "yes"}]), "true or false"),
    ("both.json", json.dumps({"classes": [{"name": "sky"}], "stuff": ["sky"]}), "not both"),
    ("noclasses.yaml", "names: [cat]", "`classes` list"),
    ("empty.txt", "# nothing\n", "empty"),
    ("blank.txt", "stuff:\n", "empty name"),
])
def test_bad_files_are_rejected_with_a_reason(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_vocabulary_file(path)


def test_file_limits_are_passed_on(tmp_path):
    path = tmp_path / "many.txt"
    path.write_text("a\nb\nc\n")
    with pytest.raises(ValueError, match="limit of 2"):
        load_vocabulary_file(path, max_classes=2)
