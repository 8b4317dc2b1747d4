"""Running a cohort's cases: in this process, or on Dask distributed.

Dask is the engine (no scheduler of our own): a :class:`distributed.LocalCluster` of
worker processes by default, an existing scheduler by address, or SLURM jobs through
:class:`dask_jobqueue.SLURMCluster`. Each worker loads the model once, on its first case
that needs it, and keeps it (:class:`SegmenterPlugin`, a Dask worker plugin); torch gets
``threads_per_worker`` threads so that workers do not oversubscribe the cores; with GPUs,
one worker per GPU, each case asking for the ``GPU`` resource.

A case task (:func:`case_task`) never raises for a bad case: it returns a ``failed``
outcome carrying the CLI's message. Anything else (a bug, an out-of-memory kill of the
worker process) is a *crash*: Dask retries it ``retry`` times, on another worker when the
process died (the scheduler's ``allowed-failures``), and only then is it a failure.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from napari_medseg.cohort.case_run import (
    BatchSettings,
    case_folder,
    expected_done,
    is_done,
    run_case,
)
from napari_medseg.cohort.cases import Case, input_hashes
from napari_medseg.errors import MedsegError

#: ``on_outcome(outcome)``: called in the driver as each case ends.
OutcomeCallback = Callable[[dict], None]


def process_case(
    case: Case,
    settings: BatchSettings,
    model: Mapping[str, str],
    outdir: str,
    get_segmenter: Callable[[], Any],
) -> dict:
    """Skip, run or fail one case; returns its outcome (``status``: ``skipped``,
    ``done`` or ``failed``; ``case_id``, ``seconds``, ``error``, ``warnings``).

    The skip test hashes the inputs here, where the case runs (in parallel on the
    workers), not in the driver. A crash (any exception but MedsegError) propagates.
    """
    started = time.perf_counter()
    outcome: dict[str, Any] = {"case_id": case.case_id, "worker": _worker_name()}
    try:
        inputs = input_hashes(case)
        expected = expected_done(case, settings, model, inputs)
        if is_done(case_folder(outdir, case), expected):
            outcome.update(status="skipped", seconds=time.perf_counter() - started)
            return outcome
        done = run_case(case, settings, model, outdir, get_segmenter(), inputs)
        outcome.update(status="done", warnings=done["warnings"])
    except MedsegError as error:
        outcome.update(status="failed", kind="bad input", error=str(error))
    except OSError as error:  # a file that vanished or cannot be read: the case's problem
        name = f"{error.filename}: " if error.filename else ""
        outcome.update(status="failed", kind="bad input", error=f"{name}{error.strerror or error}")
    outcome["seconds"] = time.perf_counter() - started
    return outcome


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


# -- in this process --------------------------------------------------------------------
def run_serial(
    cases: Iterable[Case],
    settings: BatchSettings,
    model: Mapping[str, str],
    outdir: str,
    on_outcome: OutcomeCallback,
    retry: int = 0,
    torch_threads: int | None = None,
) -> None:
    """Run the cases one after another in this process (no Dask): for ``--workers 0``
    and SLURM job arrays with ``--part``. A crash is retried ``retry`` times; torch gets
    ``torch_threads`` threads when given (else its default)."""
    if torch_threads is not None:
        import torch

        torch.set_num_threads(max(1, torch_threads))
    loaded: list[Any] = []

    def get_segmenter() -> Any:
        if not loaded:
            loaded.append(settings.make_segmenter())
        return loaded[0]

    for case in cases:
        for attempt in range(retry + 1):
            try:
                outcome = process_case(case, settings, model, outdir, get_segmenter)
                break
            except Exception as error:  # noqa: BLE001 (a crash: retried, then reported)
                outcome = _crash_outcome(case, error, attempt + 1)
        on_outcome(outcome)


def _crash_outcome(case: Case, error: BaseException, attempts: int) -> dict:
    return {
        "case_id": case.case_id,
        "status": "failed",
        "kind": "crashed",
        "error": f"{type(error).__name__}: {error}",
        "attempts": attempts,
    }


# -- on Dask ------------------------------------------------------------------------------
def case_task(case: Case, settings: BatchSettings, model: Mapping[str, str], outdir: str) -> dict:
    """A Dask task: :func:`process_case` with the worker's loaded model."""
    from distributed import get_worker

    from napari_medseg.cohort.worker_plugin import PLUGIN_NAME

    plugin = get_worker().plugins[PLUGIN_NAME]
    with plugin.lock:  # one case at a time on the worker's one model
        return process_case(case, settings, model, outdir, plugin.segmenter)


@dataclass
class DaskOptions:
    """Where the cases run on Dask.

    Attributes
    ----------
    workers : int
        Worker processes of the LocalCluster (ignored with a scheduler or SLURM).
    threads_per_worker : int
        Torch threads per worker (and Dask threads: one case at a time per worker).
    scheduler : str or None
        Address of a running Dask scheduler (``tcp://host:8786``).
    slurm : dict or None
        ``dask_jobqueue.SLURMCluster`` keywords, plus ``jobs``.
    gpus : int
        GPUs on this machine (LocalCluster: one worker each).
    retry : int
        Times a crashed case is retried.
    dashboard : str or None
        The LocalCluster's dashboard address (``":8787"``), None for none.
    """

    workers: int = 1
    threads_per_worker: int = 1
    scheduler: str | None = None
    slurm: dict | None = None
    gpus: int = 0
    retry: int = 2
    dashboard: str | None = ":0"


def slurm_cluster(options: Mapping[str, Any]) -> Any:
    """A :class:`dask_jobqueue.SLURMCluster` (no job submitted until it is scaled)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as error:
        raise MedsegError(
            "--slurm needs dask-jobqueue: pip install 'napari-medseg[cohort]'"
        ) from error
    keywords = {key: value for key, value in options.items() if key != "jobs"}
    gpus = keywords.pop("gpus", 0)
    if gpus:
        keywords.setdefault("job_extra_directives", []).append(f"--gres=gpu:{gpus}")
        keywords["worker_extra_args"] = ["--resources", "GPU=1"]  # one process per GPU
    return SLURMCluster(**keywords)


def open_client(options: DaskOptions) -> tuple[Any, Any]:
    """``(client, cluster)``; ``cluster`` is None for an existing scheduler."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as error:
        raise MedsegError(
            "medseg batch runs on Dask distributed, which is not installed: pip install "
            "'napari-medseg[cohort]' (or run in this process with --workers 0)"
        ) from error
    if not logging.getLogger().isEnabledFor(logging.INFO):  # medseg -v shows Dask's log
        logging.getLogger("distributed").setLevel(logging.WARNING)
    # a crashed case (its worker died) is rescheduled this many times, then fails
    threads = str(max(1, options.threads_per_worker))
    dask.config.set(
        {
            "distributed.scheduler.allowed-failures": max(0, options.retry),
            # Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536 (memory handed back to
            # the OS); glibc then maps and unmaps torch's large buffers on every call: a case
            # took 1.08 s instead of 0.70 s in a worker here. Unset for the model's workers.
            "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
            # numpy's and torch's thread pools read these when they start: as many threads as
            # the plugin gives torch
            "distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": threads,
            "distributed.nanny.pre-spawn-environ.MKL_NUM_THREADS": threads,
            "distributed.nanny.pre-spawn-environ.OPENBLAS_NUM_THREADS": threads,
        }
    )
    if options.scheduler:
        try:
            return Client(options.scheduler, timeout="20s"), None
        except OSError as error:
            raise MedsegError(
                f"--scheduler {options.scheduler}: no Dask scheduler answers there ({error})."
            ) from error
    if options.slurm is not None:
        cluster = slurm_cluster(options.slurm)
        cluster.scale(jobs=int(options.slurm.get("jobs", 1)))
        return Client(cluster), cluster
    workers = options.gpus or max(1, options.workers)
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=options.dashboard,
        resources={"GPU": 1} if options.gpus else None,
    )
    return Client(cluster), cluster


def run_dask(
    client: Any,
    cases: Iterable[Case],
    settings: BatchSettings,
    model: Mapping[str, str],
    outdir: str,
    on_outcome: OutcomeCallback,
    options: DaskOptions,
) -> None:
    """Run the cases on ``client``'s workers, calling ``on_outcome`` as each ends."""
    from distributed import as_completed

    from napari_medseg.cohort.worker_plugin import PLUGIN_NAME, SegmenterPlugin

    # GPUs per machine: this one's (LocalCluster), or each SLURM job's
    gpus = options.gpus or int((options.slurm or {}).get("gpus", 0) or 0)
    client.register_plugin(
        SegmenterPlugin(settings, options.threads_per_worker, gpus), name=PLUGIN_NAME
    )
    futures = {}
    resources = {"GPU": 1} if gpus else None
    for case in cases:
        future = client.submit(
            case_task,
            case,
            settings,
            dict(model),
            str(outdir),
            key=f"medseg-case-{case.case_id}-{os.getpid()}-{time.time_ns()}",
            retries=max(0, options.retry),
            pure=False,
            resources=resources,
        )
        futures[future] = case
    for future in as_completed(list(futures)):
        case = futures[future]
        try:
            outcome = future.result()
        except Exception as error:  # noqa: BLE001 (crashed after its retries, or killed)
            outcome = _crash_outcome(case, error, options.retry + 1)
        on_outcome(outcome)


__all__ = [
    "DaskOptions",
    "case_task",
    "open_client",
    "process_case",
    "run_dask",
    "run_serial",
]
