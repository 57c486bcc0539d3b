"""Node parameters: defaults, the shipped params file, and clear errors for every kind of mistake."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fcclip_ros.node_config import PARAMETERS, SPECS, ConfigError, parse_config, unknown_parameters

pytestmark = pytest.mark.ros

PARAMS_FILE = Path(__file__).resolve().parents[2] / "config" / "segment.yaml"


def flatten(tree: dict, prefix: str = "") -> dict:
    """Nested YAML parameters -> ROS dotted names."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def test_defaults_parse() -> None:
    config = parse_config({})
    assert config.model_config == "convnext_large" and config.device == "auto"
    assert config.input_short_side is None and config.object_mask_threshold is None
    assert config.vocabulary == () and config.image_transport == "raw"
    assert (config.image_qos.reliability, config.image_qos.durability, config.image_qos.depth) == (
        "best_effort", "volatile", 1)
    assert config.output_qos.reliability == "reliable"


def test_shipped_params_file_lists_every_parameter_with_its_default() -> None:
    values = flatten(yaml.safe_load(PARAMS_FILE.read_text())["/**"]["ros__parameters"])
    documented_elsewhere = {"vocabulary", "vocabulary_stuff"}  # commented examples: unset by default
    assert set(values) == set(SPECS) - documented_elsewhere
    for name, value in values.items():
        assert value == SPECS[name].default, name
    parse_config(values)


def test_values_are_converted() -> None:
    config = parse_config({"input_short_side": 512, "overlay_alpha": 1, "object_mask_threshold": 0.25,
                           "vocabulary": ["person, man", "floor"], "vocabulary_stuff": ["floor"],
                           "device": "cuda:1", "image_qos.reliability": "reliable", "cpu_threads": 3})
    assert config.input_short_side == 512 and config.overlay_alpha == 1.0
    assert config.cpu_threads == 3 and parse_config({}).cpu_threads is None
    assert config.object_mask_threshold == 0.25
    assert config.vocabulary == ("person, man", "floor") and config.vocabulary_stuff == ("floor",)
    assert config.device == "cuda:1" and config.image_qos.reliability == "reliable"


def test_precision_and_tf32_reach_the_config() -> None:
    assert (parse_config({}).precision, parse_config({}).tf32) == ("fp32", False)
    config = parse_config({"precision": "bf16", "tf32": True})
    assert (config.precision, config.tf32) == ("bf16", True)
    with pytest.raises(ConfigError, match="precision"):
        parse_config({"precision": "half"})


def test_precision_reaches_the_predictor() -> None:
    from fcclip_ros.model_setup import load_predictor

    loaded = load_predictor("fixture_tiny", "", "cpu", allow_untrained=True, precision="bf16")
    assert loaded.untrained and loaded.predictor.precision.name == "bf16"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"device": "gpu", "input_short_side": "big", "overlay_alpha": 2.0, "publish_overlay": "yes",
                      "image_transport": "theora", "image_qos.depth": 0, "vocabulary": [1, 2],
                      "detection_thresold": 0.5, "image_qos.reliabilty": "reliable"})
    text = str(error.value)
    for expected in (
        "device must be auto, cpu, cuda or cuda:N; got 'gpu'",
        "input_short_side must be an integer, got 'big'",
        "overlay_alpha must be <= 1, got 2.0",
        "publish_overlay must be true or false, got 'yes'",
        "image_transport must be one of raw, compressed; got 'theora'",
        "image_qos.depth must be >= 1, got 0",
        "vocabulary must be a list of strings",
        "unknown parameter(s) detection_thresold, image_qos.reliabilty",
    ):
        assert expected in text


def test_vocabulary_sources_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="either vocabulary or vocabulary_file"):
        parse_config({"vocabulary": ["a"], "vocabulary_file": "classes.txt"})
    with pytest.raises(ConfigError, match="vocabulary_stuff is only meaningful"):
        parse_config({"vocabulary_stuff": ["floor"]})


def test_rclpy_parameters_are_not_unknown() -> None:
    assert unknown_parameters(["use_sim_time", "qos_overrides./image.subscription.depth", "device", "x"]) == ["x"]
    assert all(spec.description for spec in PARAMETERS)
