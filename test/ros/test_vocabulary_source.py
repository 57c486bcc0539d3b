"""The node's vocabulary sources: request limits, the start-up order, the state file."""
from __future__ import annotations

import pytest
import yaml

from fcclip_core.vocabulary import load_vocabulary_file
from fcclip_ros.vocabulary_source import (RequestLimits, as_request, initial_vocabulary, load_state, parse_request,
                                          save_state)

pytestmark = pytest.mark.ros

LIMITS = RequestLimits(max_classes=3, max_label_length=20)


def test_requests_beyond_the_limits_are_rejected_with_the_reason() -> None:
    with pytest.raises(ValueError, match="the class list is empty"):
        parse_request([], [], LIMITS)
    with pytest.raises(ValueError, match=r"4 classes exceed the limit of 3 \(max_classes\)"):
        parse_request(["a", "b", "c", "d"], [], LIMITS)
    with pytest.raises(ValueError, match=r"class 1 is 21 characters long, more than the limit of 20"):
        parse_request(["a", "x" * 21], [], LIMITS)
    with pytest.raises(ValueError, match="stuff entry 0 is 21 characters long"):
        parse_request(["a"], ["y" * 21], LIMITS)


def test_request_round_trip_keeps_texts_and_stuff() -> None:
    vocabulary = parse_request(["person, man,woman", "sky"], ["sky"], LIMITS)
    assert as_request(vocabulary) == (["person, man,woman", "sky"], ["sky"])
    assert parse_request(*as_request(vocabulary), LIMITS) == vocabulary


def test_state_file_is_written_atomically_and_reads_back(tmp_path) -> None:
    vocabulary = parse_request(["dog, puppy", "grass"], ["grass"], LIMITS)
    path = tmp_path / "sub" / "state.yaml"
    save_state(path, vocabulary, version=7)
    assert yaml.safe_load(path.read_text()) == {"version": 7, "classes": ["dog, puppy", "grass"], "stuff": ["grass"]}
    assert [p.name for p in path.parent.iterdir()] == ["state.yaml"]  # no temporary file left behind
    assert load_state(path, LIMITS) == vocabulary
    assert load_vocabulary_file(path) == vocabulary  # also usable as a vocabulary_file


def test_start_order_state_then_parameter_then_file_then_coco(tmp_path) -> None:
    state = tmp_path / "state.yaml"
    listing = tmp_path / "classes.txt"
    listing.write_text("cat\nstuff: floor\n")
    kwargs = dict(classes=["bird"], stuff=[], vocabulary_file="", state_file=str(state), limits=LIMITS)
    vocabulary, source = initial_vocabulary(**kwargs)
    assert vocabulary.labels == ("bird",) and source == "the vocabulary parameter"  # no state file yet
    save_state(state, parse_request(["fish"], [], LIMITS), version=2)
    vocabulary, source = initial_vocabulary(**kwargs)
    assert vocabulary.labels == ("fish",) and source.startswith("saved state")
    vocabulary, source = initial_vocabulary(classes=[], stuff=[], vocabulary_file=str(listing), state_file="",
                                            limits=LIMITS)
    assert vocabulary.labels == ("cat", "floor") and vocabulary.thing_mask == (True, False)
    vocabulary, source = initial_vocabulary(classes=[], stuff=[], vocabulary_file="", state_file="",
                                            limits=RequestLimits(1000, 256))
    assert len(vocabulary) == 133 and "COCO" in source


def test_broken_sources_name_themselves(tmp_path) -> None:
    state = tmp_path / "state.yaml"
    state.write_text("just a string\n")
    with pytest.raises(ValueError, match="vocabulary_state_file .*state.yaml: .*not a saved vocabulary"):
        initial_vocabulary(classes=[], stuff=[], vocabulary_file="", state_file=str(state), limits=LIMITS)
    with pytest.raises(ValueError, match="vocabulary parameter: .*repeats class 0"):
        initial_vocabulary(classes=["a", "a"], stuff=[], vocabulary_file="", state_file="", limits=LIMITS)
    with pytest.raises(ValueError, match="vocabulary_file .*missing.txt"):
        initial_vocabulary(classes=[], stuff=[], vocabulary_file=str(tmp_path / "missing.txt"), state_file="",
                           limits=LIMITS)
    too_many = tmp_path / "many.txt"
    too_many.write_text("a\nb\nc\nd\n")
    with pytest.raises(ValueError, match="4 classes exceed the limit of 3"):
        initial_vocabulary(classes=[], stuff=[], vocabulary_file=str(too_many), state_file="", limits=LIMITS)
