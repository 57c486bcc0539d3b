"""Run a job's units on a Ray cluster: actors each hold one Predictor; the driver shows progress.

Ray is imported here only, and this module only when ``--ray`` is given. Each actor builds its
Predictor once (on its own GPU when the cluster has them, otherwise on its CPU share) and runs
units exactly as the local runner does, so outputs are the same. An actor that dies (killed,
out of memory, node lost) is restarted by Ray and its unit retried; a unit whose task fails for
another reason is resubmitted by the driver, up to ``retries`` times in all.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from fcclip_core.jobs.predictor_spec import PredictorSpec
from fcclip_core.jobs.report import UnitReport
from fcclip_core.jobs.units import WorkUnit, run_unit

log = logging.getLogger("fcclip-segment")


@dataclass(frozen=True)
class RayOptions:
    address: Optional[str] = None  # None: start a local cluster; "auto" or "ray://host:10001": join one
    workers: Optional[int] = None  # actors; default: one per GPU, else one per `cpus_per_worker` CPUs
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    retries: int = 3


class SegmentWorker:
    """A Ray actor body: one Predictor, units in, reports out."""

    def __init__(self, spec: PredictorSpec) -> None:
        self.predictor = spec.build()

    def pid(self) -> int:
        return os.getpid()

    def run(self, unit: WorkUnit) -> UnitReport:
        return run_unit(self.predictor, unit)


def _worker_count(ray: Any, options: RayOptions) -> int:
    if options.workers:
        return options.workers
    resources = ray.cluster_resources()
    if options.gpus_per_worker > 0:
        return max(1, int(resources.get("GPU", 0) // options.gpus_per_worker))
    return max(1, int(resources.get("CPU", 1) // options.cpus_per_worker))


def run_ray(spec: PredictorSpec, units: Sequence[WorkUnit], failures: dict[str, str], options: RayOptions) -> UnitReport:
    """Run ``units`` on Ray actors; returns the merged report, failed files go to ``failures``."""
    import ray
    from tqdm import tqdm

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=options.address, log_to_driver=False, logging_level=logging.WARNING)
    try:
        actor_class = ray.remote(max_restarts=options.retries, max_task_retries=options.retries)(SegmentWorker)
        gpus = options.gpus_per_worker
        if gpus == 0 and spec.device.startswith("cuda"):
            gpus = 1.0
        threads = spec.threads or max(1, int(options.cpus_per_worker))
        worker_spec = PredictorSpec(**{**spec.__dict__, "threads": threads})
        count = min(_worker_count(ray, options), max(1, len(units)))
        actors = [actor_class.options(num_cpus=options.cpus_per_worker, num_gpus=gpus).remote(worker_spec)
                  for _ in range(count)]
        log.info("ray: %d worker(s) on %s", count, ray.get_runtime_context().gcs_address)
        return _drive(ray, actors, units, failures, options.retries, tqdm)
    finally:
        if started_here:
            ray.shutdown()


def _drive(ray: Any, actors: list, units: Sequence[WorkUnit], failures: dict[str, str], retries: int, tqdm: Any) -> UnitReport:
    total = UnitReport()
    pending = list(enumerate(units))[::-1]  # a stack: pop() gives units in order
    attempts = {i: 0 for i in range(len(units))}
    running: dict[Any, tuple[int, Any]] = {}
    idle = list(actors)
    with tqdm(total=sum(u.frames for u in units), desc="job (ray)", unit="frame", dynamic_ncols=True) as bar:
        while pending or running:
            while pending and idle:
                index, unit = pending.pop()
                if str(unit.file) in failures:
                    continue
                actor = idle.pop()
                attempts[index] += 1
                running[actor.run.remote(unit)] = (index, actor)
            if not running:  # every actor is gone for good
                for _, unit in pending:
                    failures.setdefault(str(unit.file), "no Ray worker left (all failed beyond their restarts)")
                break
            done, _ = ray.wait(list(running), num_returns=1)
            index, actor = running.pop(done[0])
            unit = units[index]
            try:
                report = ray.get(done[0])
            except ray.exceptions.RayActorError as exc:  # dead beyond its restarts: retire it, retry elsewhere
                _retry_or_fail(unit, index, attempts, retries, pending, failures, exc)
                continue
            except Exception as exc:  # the task itself failed (after Ray's own retries)
                idle.append(actor)
                _retry_or_fail(unit, index, attempts, retries, pending, failures, exc)
                continue
            idle.append(actor)
            total.merge(report)
            bar.update(unit.frames)
            bar.set_postfix_str(unit.file.name)
    return total


def _retry_or_fail(unit: WorkUnit, index: int, attempts: dict[int, int], retries: int, pending: list,
                   failures: dict[str, str], error: Exception) -> None:
    """Queue ``unit`` again, or record its file as failed when its attempts are used up."""
    if attempts[index] <= retries:
        log.warning("ray: %s failed (%s); retrying (%d of %d)", unit.file.name, type(error).__name__,
                    attempts[index], retries)
        pending.append((index, unit))
    else:
        failures[str(unit.file)] = f"failed {attempts[index]} time(s) on Ray: {error}"
