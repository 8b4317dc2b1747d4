"""``medseg batch``: one model over a cohort, on Dask, resumable, with a cohort table.

The work is :mod:`napari_medseg.cohort`'s; this module reads the options, opens the Dask
cluster (a LocalCluster, ``--scheduler`` or ``--slurm``), shows progress and prints the
summary.
"""

from __future__ import annotations

import argparse
import os
import sys

from napari_medseg.cli.common import ALLOW_GAPS_HELP, check_window_options, cli_advice
from napari_medseg.errors import MedsegError, shown_path

DESCRIPTION = """\
Segment every case of a cohort with one model. INPUTS is a folder (each NIfTI file and
each DICOM series is a case) or a CSV manifest (columns case_id, image or image_0000,
image_0001... for multi-channel models, and optionally reference). Each case goes to
OUTDIR/<case_id>/: labels.nii.gz with its sidecar (and labels_seg.dcm for DICOM cases
with --dicom-seg), report.csv and report_lesions.csv, and done.json last. A rerun skips
the cases whose done.json matches their inputs, the model and the settings. Bad cases
go to OUTDIR/failures.jsonl and the others go on; OUTDIR/cohort.csv gets one row per
case and label.

The cases run on Dask distributed: a LocalCluster of --workers processes on this machine
(default), an existing cluster (--scheduler), or SLURM jobs (--slurm; --dry-run prints
the job script). --part I/N runs every N-th case from the I-th (sorted by case id), for
SLURM job arrays; --workers 0 runs in this process without Dask.
"""


def _default_workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, int(cores or 1))


def _gpu_count(device: str) -> int:
    if device not in ("auto", "cuda"):
        return 0
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def batch_advice(text: str) -> str:
    """A core message said ``medseg batch``'s way: ``--allow-gaps`` as the CLI spells it,
    and the series of a folder chosen in the manifest's ``series`` column (batch has no
    ``--series``: a folder's series are its cases, a manifest row names one)."""
    return cli_advice(text).replace(
        "with --series (series_key=...)", "in the manifest's series column"
    )


def register(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``batch`` to the ``medseg`` sub-commands; returns its parser."""
    from napari_medseg.models.registry import DEFAULT_MODEL

    parser = commands.add_parser(
        "batch",
        help="segment a whole cohort on Dask: resumable, with a cohort table",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", metavar="INPUTS", help="cohort folder or CSV manifest")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTDIR",
        help="output folder (one sub-folder per case)",
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"as medseg segment's --model (default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="worker processes on this machine (default: one per core, "
        "one per GPU where there are GPUs); 0: in this process, no Dask",
    )
    parser.add_argument(
        "--threads-per-worker",
        type=int,
        help="torch threads per worker (default 1; with --workers 0, torch's default)",
    )
    parser.add_argument(
        "--scheduler", metavar="tcp://HOST:PORT", help="run on an existing Dask cluster"
    )
    slurm = parser.add_argument_group("SLURM (dask-jobqueue)")
    slurm.add_argument("--slurm", action="store_true", help="run the workers as SLURM jobs")
    slurm.add_argument("--slurm-jobs", type=int, default=1, help="jobs to submit (default 1)")
    slurm.add_argument("--cores", type=int, default=4, help="cores per job (default 4)")
    slurm.add_argument("--memory", default="16GB", help="memory per job (default 16GB)")
    slurm.add_argument("--gpus", type=int, default=0, help="GPUs per job (default 0)")
    slurm.add_argument("--walltime", default="01:00:00", help="per job (default 01:00:00)")
    slurm.add_argument("--queue", help="SLURM partition")
    slurm.add_argument("--account", help="SLURM account")
    slurm.add_argument(
        "--dry-run",
        action="store_true",
        help="print the job script that would be submitted, and stop",
    )
    parser.add_argument(
        "--part", metavar="I/N", help="run only part I of N (every N-th case from the I-th)"
    )
    parser.add_argument(
        "--retry",
        type=int,
        default=2,
        help="retries of a crashed case (a killed worker, an unexpected "
        "error; default 2); a bad input is not retried",
    )
    parser.add_argument(
        "--dicom-seg", action="store_true", help="also write a DICOM SEG for each DICOM case"
    )
    parser.add_argument("--device", default="auto", help="as medseg segment's --device")
    parser.add_argument("--overlap", type=float, help="sliding-window overlap in [0, 1)")
    parser.add_argument("--sw-batch-size", type=int, help="windows per network call")
    parser.add_argument("--no-amp", action="store_true", help="float32 throughout")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation")
    parser.add_argument(
        "--trust-bundle",
        action="store_true",
        help="trust a MONAI bundle folder (as medseg segment)",
    )
    parser.add_argument("--allow-gaps", action="store_true", help=ALLOW_GAPS_HELP)
    parser.set_defaults(func=cmd_batch)
    return parser


def _slurm_options(args: argparse.Namespace) -> dict:
    options = {
        "jobs": args.slurm_jobs,
        "cores": args.cores,
        "memory": args.memory,
        "walltime": args.walltime,
        # one worker process per GPU, else one per --threads-per-worker cores: each runs
        # one case at a time with its torch threads
        "processes": args.gpus or max(1, args.cores // (args.threads_per_worker or 1)),
        "gpus": args.gpus,
    }
    if args.queue:
        options["queue"] = args.queue
    if args.account:
        options["account"] = args.account
    return options


class _CaseProgress:
    """Cases done / failed and an ETA on stderr: a bar on a terminal, a line per case
    otherwise."""

    def __init__(self, total: int, stream=None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, outcome: dict, summary) -> None:
        from napari_medseg.cohort.batch import eta_text

        finished = len(summary.done) + len(summary.skipped) + len(summary.failed)
        status = outcome["status"]
        if self.tty:
            width = 30
            filled = int(round(width * finished / max(self.total, 1)))
            self.stream.write(
                f"\rbatch [{'#' * filled}{'.' * (width - filled)}] "
                f"{eta_text(summary, self.total)}   "
            )
            if finished >= self.total:
                self.stream.write("\n")
        else:
            seconds = outcome.get("seconds")
            took = f" in {seconds:.1f} s" if isinstance(seconds, float) else ""
            self.stream.write(
                f"batch: {outcome['case_id']} {status}{took} [{eta_text(summary, self.total)}]\n"
            )
        if status == "failed":
            self.stream.write(
                f"{'' if not self.tty else chr(10)}batch: {outcome['case_id']} "
                f"failed: {outcome['error']}\n"
            )
        self.stream.flush()


def cmd_batch(args: argparse.Namespace) -> int:
    """Run ``medseg batch``."""
    from functools import partial

    from napari_medseg.cohort.batch import FAILURES_NAME, run_batch
    from napari_medseg.cohort.case_run import BatchSettings
    from napari_medseg.cohort.cases import load_cases, parse_part, select_part
    from napari_medseg.cohort.engine import DaskOptions, open_client, run_dask, run_serial
    from napari_medseg.cohort.table import TABLE_NAME
    from napari_medseg.io.atomic import check_writable, refuse_source_overwrite

    if args.threads_per_worker is not None and args.threads_per_worker < 1:
        raise MedsegError(f"--threads-per-worker must be >= 1, got {args.threads_per_worker}")
    check_window_options(args)
    if args.retry < 0:
        raise MedsegError(f"--retry must be >= 0, got {args.retry}")
    if args.workers is not None and args.workers < 0:
        raise MedsegError(f"--workers must be >= 0, got {args.workers}")
    if args.slurm and args.scheduler:
        raise MedsegError("--slurm and --scheduler are two ways to get workers: give one")
    settings = BatchSettings(
        model=args.model,
        device=args.device,
        amp=not args.no_amp,
        overlap=args.overlap,
        sw_batch_size=args.sw_batch_size,
        tta=args.tta,
        trust_bundle=args.trust_bundle,
        allow_gaps=args.allow_gaps,
        dicom_seg=args.dicom_seg,
    )
    if args.slurm and args.dry_run:
        from napari_medseg.cohort.engine import slurm_cluster

        cluster = slurm_cluster(_slurm_options(args))
        try:
            print(cluster.job_script())
        finally:
            cluster.close()
        return 0

    outdir = args.output
    inputs_folder = os.path.isdir(args.inputs)
    if inputs_folder and os.path.realpath(outdir) == os.path.realpath(args.inputs):
        raise MedsegError(
            f"{shown_path(outdir)}: is the cohort folder itself; give the outputs a folder "
            "of their own (it may lie inside the cohort folder)"
        )
    # the outputs are ours; a manifest is the user's (a folder's scans are protected case
    # by case when written)
    table = os.path.join(outdir, TABLE_NAME)
    refuse_source_overwrite(table, [] if inputs_folder else [args.inputs])
    check_writable(table)
    cases = load_cases(args.inputs, outdir=outdir)
    if args.part:
        index, count = parse_part(args.part)
        cases = select_part(cases, index, count)
        print(f"part {index}/{count}: {len(cases)} cases", file=sys.stderr)
    from napari_medseg.cli.segment import _refuse_untrusted_bundle

    _refuse_untrusted_bundle(args.model, args.trust_bundle)
    progress = _CaseProgress(len(cases))
    if args.workers == 0 and not (args.scheduler or args.slurm):
        summary = run_batch(
            cases,
            outdir,
            settings,
            partial(run_serial, retry=args.retry, torch_threads=args.threads_per_worker),
            on_outcome=progress,
            message=batch_advice,
        )
    else:
        gpus = _gpu_count(args.device) if not (args.scheduler or args.slurm) else 0
        threads = args.threads_per_worker or 1
        workers = (
            args.workers
            if args.workers is not None
            else (gpus or max(1, _default_workers() // threads))
        )
        options = DaskOptions(
            workers=workers,
            threads_per_worker=threads,
            scheduler=args.scheduler,
            slurm=_slurm_options(args) if args.slurm else None,
            gpus=gpus,
            retry=args.retry,
        )
        client, cluster = open_client(options)
        try:
            where = args.scheduler or (
                "SLURM" if args.slurm else f"{workers} local worker process(es)"
            )
            print(f"Dask: {where}; dashboard {client.dashboard_link}", file=sys.stderr)
            engine = partial(run_dask, client, options=options)
            summary = run_batch(
                cases, outdir, settings, engine, on_outcome=progress, message=batch_advice
            )
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    print(summary.text())
    print(f"cohort table: {shown_path(summary.table)}")
    if summary.failed:
        print(f"failures: {shown_path(os.path.join(outdir, FAILURES_NAME))}")
    return 1 if summary.failed and not (summary.done or summary.skipped) else 0
