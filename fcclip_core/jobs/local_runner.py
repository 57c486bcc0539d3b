"""Run a job's units one after another in this process, with a progress bar (ETA) per file."""
from __future__ import annotations

from itertools import groupby
from typing import Any, Sequence

from fcclip_core.jobs.report import UnitReport
from fcclip_core.jobs.units import WorkUnit, run_unit


def run_local(predictor: Any, units: Sequence[WorkUnit], failures: dict[str, str]) -> UnitReport:
    """Run ``units`` (consecutive units of one file share a bar); a failing file is recorded, not fatal."""
    from mcap.exceptions import McapError
    from tqdm import tqdm

    total = UnitReport()
    for file, group in groupby(units, key=lambda u: u.file):
        group = list(group)
        with tqdm(total=sum(u.frames for u in group), desc=file.name, unit="frame", dynamic_ncols=True) as bar:
            for unit in group:
                try:
                    total.merge(run_unit(predictor, unit, bar.update))
                except (OSError, ValueError, RuntimeError, McapError) as exc:  # this file fails, the job goes on
                    failures[str(file)] = f"{type(exc).__name__}: {exc}"
                    break
    return total
