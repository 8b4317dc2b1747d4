"""Fine-tuning on several devices or processes: torchrun launches, this module runs.

:func:`launch` starts ``python -m torch.distributed.run --standalone --nproc_per_node N
-m napari_medseg.training.distributed SETTINGS.json OUTCOME.json [--resume]``; each of the
``N`` processes runs :func:`~napari_medseg.training.finetune.run_finetune`, which joins
torchrun's process group (gloo on the CPU, NCCL on CUDA: one process per GPU), and rank
0 prints the epochs and writes the outcome for the launcher. Several nodes: run the same
``torchrun`` command with ``--nnodes``/``--rdzv-endpoint`` on each node (see
``medseg finetune --help``); nothing here is home-made scheduling.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from napari_medseg.errors import MedsegError
from napari_medseg.training.settings import FinetuneSettings


def torchrun_command(settings_file: str, outcome_file: str, nproc: int, resume: bool) -> list[str]:
    """The torchrun command line of a run with ``nproc`` processes on this machine."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={int(nproc)}", "-m", "napari_medseg.training.distributed",
        settings_file, outcome_file,
    ]  # fmt: skip
    return command + (["--resume"] if resume else [])


def launch(settings: FinetuneSettings, nproc: int, resume: bool = False, threads: int = 0) -> dict:
    """Run a fine-tuning job in ``nproc`` torchrun processes; returns rank 0's outcome
    (:meth:`FinetuneOutcome.to_dict`) or ``{"error": message}`` for a refused run.

    Parameters
    ----------
    settings : FinetuneSettings
    nproc : int
        Processes (one per GPU on CUDA; CPU processes share the cores).
    resume : bool
    threads : int
        torch CPU threads per process (0 = the cores divided among the processes).

    Raises
    ------
    MedsegError
        torchrun failed without an outcome (its output was shown on the terminal).
    """
    with tempfile.TemporaryDirectory(prefix="medseg-finetune-") as folder:
        settings_file = Path(folder) / "settings.json"
        outcome_file = Path(folder) / "outcome.json"
        settings_file.write_text(settings.to_json())
        env = dict(os.environ)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        env["OMP_NUM_THREADS"] = str(threads or max(1, cores // max(1, nproc)))
        completed = subprocess.run(
            torchrun_command(str(settings_file), str(outcome_file), nproc, resume), env=env
        )
        if outcome_file.is_file():
            return json.loads(outcome_file.read_text())
        raise MedsegError(
            f"the {nproc} torchrun processes ended (status {completed.returncode}) without "
            "an outcome; their output above says why."
        )


def main(argv: list[str] | None = None) -> int:
    """One torchrun process: run the job of ``SETTINGS.json``; rank 0 writes the outcome."""
    import argparse

    from napari_medseg.training.finetune import run_finetune

    parser = argparse.ArgumentParser(prog="napari_medseg.training.distributed")
    parser.add_argument("settings")
    parser.add_argument("outcome")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    settings = FinetuneSettings.from_dict(json.loads(Path(args.settings).read_text()))
    rank = int(os.environ.get("RANK", "0"))

    def show(record) -> None:
        print(record.line(), flush=True)

    def message(text: str) -> None:
        print(text, flush=True)

    try:
        outcome = run_finetune(settings, resume=args.resume, on_epoch=show, on_message=message)
        data = outcome.to_dict()
    except MedsegError as error:
        data = {"error": str(error)}
    if rank == 0:
        Path(args.outcome).write_text(json.dumps(data, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
