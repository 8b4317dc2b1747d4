"""The Dask worker plugin that holds a worker's model (imported only where Dask runs).

A worker loads the model on its first case that needs one and keeps it for the rest of
the run; a worker that is restarted (its process died) gets the plugin again from the
scheduler, and loads the model again when it needs it.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from napari_medseg.cohort.case_run import BatchSettings

#: Name of the worker plugin that holds the loaded model.
PLUGIN_NAME = "napari-medseg-segmenter"


class SegmenterPlugin(WorkerPlugin):
    """Dask worker plugin: the worker's model, loaded on first use and kept.

    Parameters
    ----------
    settings : BatchSettings
    torch_threads : int
        ``torch.set_num_threads`` in the worker.
    gpus : int
        GPUs on the worker's machine: worker ``n`` uses ``cuda:n % gpus``, ``n`` being its
        name in a LocalCluster (``"0"``, ``"1"``...) or the process number that ends a
        dask-jobqueue worker's name (``"SLURMCluster-3-1"``); 0: the settings' device.

    Notes
    -----
    A worker runs one case at a time (:attr:`lock`): a worker of an existing cluster may
    have several threads, and the loaded model is one. Give workers as many threads as
    torch should use (``dask worker --nthreads 1`` and ``--threads-per-worker``).
    """

    name = PLUGIN_NAME

    def __init__(self, settings: BatchSettings, torch_threads: int = 1, gpus: int = 0) -> None:
        self.settings = settings
        self.torch_threads = torch_threads
        self.gpus = gpus
        self.worker_name = ""
        self._segmenter: Any = None
        self.lock: Any = None  # made in setup(), on the worker (a lock does not pickle)

    def setup(self, worker: Any) -> None:
        import threading

        import torch

        torch.set_num_threads(max(1, self.torch_threads))
        self.worker_name = str(worker.name)
        self.lock = threading.Lock()

    def teardown(self, worker: Any) -> None:
        self._segmenter = None

    def segmenter(self) -> Any:
        """The loaded model (loaded now if this worker has not yet)."""
        if self._segmenter is None:
            device = None
            if self.gpus and self.settings.device in ("auto", "cuda"):
                device = f"cuda:{worker_index(self.worker_name) % self.gpus}"
            self._segmenter = self.settings.make_segmenter(device)
        return self._segmenter


def worker_index(name: str) -> int:
    """The worker's number on its machine: a LocalCluster worker's name (``"1"``), or the
    process number ending a dask-jobqueue worker's name (``"SLURMCluster-3-1"`` -> 1); 0
    otherwise."""
    last = str(name).rsplit("-", 1)[-1]
    return int(last) if last.isdigit() else 0


__all__ = ["PLUGIN_NAME", "SegmenterPlugin", "worker_index"]
