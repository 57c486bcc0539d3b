"""The tracker on real Predictor results (tiny model): ids stay while the scene does, and a
vocabulary swap through the Predictor resets them."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fcclip_core.predictor import Predictor
from fcclip_core.spatial.tracker import SegmentTracker


@pytest.fixture(scope="module")
def tiny(reference_root):
    vocab = json.loads((reference_root / "tiny" / "vocab.json").read_text())
    stuff = [i for i, flag in enumerate(vocab["isthing"]) if not flag]
    predictor = Predictor.from_config("fixture_tiny", reference_root / "tiny" / "weights.pth",
                                      device="cpu", input_short_side=128)
    predictor.set_vocabulary(vocab["stuff_classes"], stuff=stuff)
    return predictor, np.load(reference_root / "tiny" / "inputs.npz")["image0_orig_rgb"]


def test_a_still_scene_keeps_its_ids_and_a_new_vocabulary_resets_them(tiny) -> None:
    predictor, image = tiny
    tracker = SegmentTracker()
    frames = [tracker.update_result(predictor.predict(image), stamp=0.1 * i) for i in range(3)]
    result = predictor.predict(image)
    things = [s.id for s in result.panoptic.segments if s.isthing]
    assert result.panoptic.segments, "the fixture image should give segments"
    assert all(frames[0].track_of_segment[s] == 0 for s in things)  # not yet confirmed
    assert frames[1].track_of_segment == frames[2].track_of_segment
    assert all(t > 0 for t in frames[1].track_of_segment.values())
    before = set(frames[2].track_of_segment.values())

    predictor.set_vocabulary(list(predictor.vocabulary.labels), stuff=[
        i for i, e in enumerate(predictor.vocabulary.entries) if not e.isthing])
    after = tracker.update_result(predictor.predict(image), stamp=0.3)
    assert after.reset_reason is not None and "vocabulary" in after.reset_reason
    assert not before & set(after.track_of_segment.values()) - {0}
