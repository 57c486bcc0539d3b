"""PredictorSpec.output_key: what decides a job's outputs, so a resume never mixes two models' parts."""
from __future__ import annotations

from dataclasses import replace

from fcclip_core.jobs.predictor_spec import PredictorSpec


def test_output_key_follows_what_changes_the_outputs_only():
    spec = PredictorSpec("fixture_tiny", untrained=True)
    key = spec.output_key()
    for changed in (replace(spec, precision="bf16"), replace(spec, tf32=True), replace(spec, input_short_side=320),
                    replace(spec, model_config="rn50"), replace(spec, untrained=False)):
        assert changed.output_key() != key
    for same in (replace(spec, threads=1), replace(spec, device="cpu"), replace(spec, compile_mode="default")):
        assert same.output_key() == key
