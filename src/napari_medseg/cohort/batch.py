"""A cohort run from start to end: cases in, outputs, failures, table and summary out.

:func:`run_batch` sends the cases to an engine (:mod:`~napari_medseg.cohort.engine`),
collects each outcome as it ends (progress), keeps ``OUTDIR/failures.jsonl`` current (one
JSON object per failed case of this run: ``case_id``, ``kind`` (``bad input`` or
``crashed``), ``error``, ``inputs``), and at the end rebuilds the cohort table
(:mod:`~napari_medseg.cohort.table`) and returns a :class:`BatchSummary`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from napari_medseg.cohort.case_run import BatchSettings, model_fingerprint
from napari_medseg.cohort.cases import Case
from napari_medseg.cohort.table import cohort_rows, write_cohort_table, write_volume_plot

#: The failures of the last run, in OUTDIR.
FAILURES_NAME = "failures.jsonl"


@dataclass
class BatchSummary:
    """What a run did.

    Attributes
    ----------
    done, skipped, failed : list of str
        Case ids segmented now, found done before, failed.
    seconds : float
        Wall time of the run.
    outcomes : list of dict
        Every case's outcome, in the order they ended.
    table : Path or None
        ``cohort.csv``.
    plot : Path or None
        ``cohort_volumes.png``.
    """

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    outcomes: list[dict] = field(default_factory=list)
    table: Path | None = None
    plot: Path | None = None

    @property
    def throughput_per_hour(self) -> float:
        """Cases segmented (not skipped) per hour of this run."""
        return 3600.0 * len(self.done) / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        """The summary printed at the end."""
        total = len(self.done) + len(self.skipped) + len(self.failed)
        line = (
            f"{total} cases: {len(self.done)} done, {len(self.skipped)} skipped (done "
            f"before), {len(self.failed)} failed in {self.seconds:.1f} s"
        )
        if self.done:
            line += (
                f"; {self.seconds / len(self.done):.1f} s per case segmented, "
                f"{self.throughput_per_hour:.0f} cases/hour"
            )
        return line


def _write_failures(outdir: Path, failures: Sequence[dict]) -> None:
    from napari_medseg.io.atomic import atomic_output

    target = outdir / FAILURES_NAME
    if not failures:
        target.unlink(missing_ok=True)
        return
    with atomic_output(target) as temp:
        temp.write_text(
            "".join(json.dumps(item, default=str) + "\n" for item in failures), encoding="utf-8"
        )


def run_batch(
    cases: Sequence[Case],
    outdir: str | os.PathLike,
    settings: BatchSettings,
    run: Callable[[Sequence[Case], BatchSettings, dict, str, Callable[[dict], None]], None],
    *,
    on_outcome: Callable[[dict, BatchSummary], None] | None = None,
    message: Callable[[str], str] = str,
) -> BatchSummary:
    """Run ``cases`` into ``outdir`` with the engine call ``run``.

    Parameters
    ----------
    cases : sequence of Case
    outdir : path
    settings : BatchSettings
    run : callable
        ``run(cases, settings, model, outdir, on_outcome)``: an engine
        (:func:`~napari_medseg.cohort.engine.run_serial`, or
        :func:`~napari_medseg.cohort.engine.run_dask` with its client bound).
    on_outcome : callable, optional
        ``on_outcome(outcome, summary_so_far)`` after each case (progress).
    message : callable
        Rewrites a failure's message for where it is shown (the CLI's advice).

    Returns
    -------
    BatchSummary
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = model_fingerprint(settings.model)
    summary = BatchSummary()
    failures: list[dict] = []
    by_id = {case.case_id: case for case in cases}

    def collect(outcome: dict) -> None:
        status = outcome.get("status")
        case_id = outcome["case_id"]
        if status == "failed":
            outcome["error"] = message(str(outcome.get("error", "")))
            summary.failed.append(case_id)
            case = by_id.get(case_id)
            failures.append(
                {
                    "case_id": case_id,
                    "kind": outcome.get("kind", "crashed"),
                    "error": outcome["error"],
                    "inputs": list(case.input_files()) if case else [],
                }
            )
            _write_failures(out, failures)
        elif status == "skipped":
            summary.skipped.append(case_id)
        else:
            summary.done.append(case_id)
        summary.outcomes.append(outcome)
        summary.seconds = time.perf_counter() - started
        if on_outcome is not None:
            on_outcome(outcome, summary)

    _write_failures(out, [])  # the last run's failures are redone (or fail again) now
    run(list(cases), settings, model, str(out), collect)
    columns, rows = cohort_rows(out, cases)  # every done case's report, read once
    summary.table = write_cohort_table(out, columns, rows)
    summary.plot = write_volume_plot(out, rows)
    summary.seconds = time.perf_counter() - started
    return summary


def eta_text(summary: BatchSummary, total: int) -> str:
    """``"12/40 done, 1 failed, ETA 3m20s"`` from the pace of the cases so far."""
    finished = len(summary.done) + len(summary.skipped) + len(summary.failed)
    text = f"{finished}/{total}"
    if summary.failed:
        text += f" ({len(summary.failed)} failed)"
    if 0 < finished < total and summary.seconds > 0:
        left = summary.seconds / finished * (total - finished)
        minutes, seconds = divmod(int(round(left)), 60)
        text += f", ETA {minutes}m{seconds:02d}s"
    return text


__all__ = ["FAILURES_NAME", "BatchSummary", "eta_text", "run_batch"]
