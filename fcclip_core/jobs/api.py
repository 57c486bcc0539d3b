"""Python API of long jobs: segment images, videos and ROS 2 recordings like ``fcclip-segment`` does.

    from fcclip_core.jobs.api import segment_files
    from fcclip_core.jobs.plan import JobOptions
    from fcclip_core.jobs.predictor_spec import PredictorSpec
    from fcclip_core.jobs.ray_runner import RayOptions

    spec = PredictorSpec("rn50", vocabulary=parse_vocabulary(["person", "forklift", "floor"], stuff=["floor"]))
    outcome = segment_files([Path("run1.mcap"), Path("frames/")], spec, JobOptions(output_dir=Path("out")),
                            ray=RayOptions())       # ray=None: this process
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from fcclip_core.jobs.plan import JobOptions, finish_recordings, plan_job
from fcclip_core.jobs.predictor_spec import PredictorSpec
from fcclip_core.jobs.ray_runner import RayOptions
from fcclip_core.jobs.report import UnitReport

log = logging.getLogger("fcclip-segment")


@dataclass
class JobOutcome:
    report: UnitReport
    failures: dict[str, str]  # input -> why it could not be (fully) segmented
    recordings: dict[Path, int] = field(default_factory=dict)  # output recording -> messages written
    already_done: list[Path] = field(default_factory=list)  # outputs an earlier run finished
    wall_s: float = 0.0


class NothingToDo(ValueError):
    """No input could be used; the message lists why."""


def segment_files(inputs: Sequence[Path], spec: PredictorSpec, options: JobOptions, ray: Optional[RayOptions] = None,
                  build_predictor: Callable[[PredictorSpec], Any] = PredictorSpec.build) -> JobOutcome:
    """Segment ``inputs`` into ``options.output_dir``; unusable inputs are reported, not fatal.

    Raises NothingToDo when no input can be used (nothing is written then).
    """
    options = replace(options, model_key=spec.output_key())  # resume only parts of this model
    job = plan_job(inputs, options)
    if not job.units and not job.finished:
        reasons = "; ".join(job.failures.values())
        raise NothingToDo("nothing to segment" + (f": {reasons}" if reasons else ""))
    for message in job.failures.values():
        log.error("%s", message)
    options.output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report = UnitReport()
    if job.units and ray is not None:
        from fcclip_core.jobs.ray_runner import run_ray

        report = run_ray(spec, job.units, job.failures, ray)
    elif job.units:
        from fcclip_core.jobs.local_runner import run_local

        report = run_local(build_predictor(spec), job.units, job.failures)
    recordings = finish_recordings(job)
    return JobOutcome(report, job.failures, recordings, job.finished, time.perf_counter() - started)
