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
        GPUs on the worker's machine: worker ``n`` (its name in a LocalCluster) uses
        ``cuda:n % gpus``; 0: the settings' device.
    """

    name = PLUGIN_NAME

    def __init__(self, settings: BatchSettings, torch_threads: int = 1, gpus: int = 0) -> None:
        self.settings = settings
        self.torch_threads = torch_threads
        self.gpus = gpus
        self.worker_name = ""
        self._segmenter: Any = None

    def setup(self, worker: Any) -> None:
        import torch

        torch.set_num_threads(max(1, self.torch_threads))
        self.worker_name = str(worker.name)

    def teardown(self, worker: Any) -> None:
        self._segmenter = None

    def segmenter(self) -> Any:
        """The loaded model (loaded now if this worker has not yet)."""
        if self._segmenter is None:
            device = None
            if self.gpus and self.settings.device in ("auto", "cuda"):
                index = int(self.worker_name) if self.worker_name.isdigit() else 0
                device = f"cuda:{index % self.gpus}"
            self._segmenter = self.settings.make_segmenter(device)
        return self._segmenter


__all__ = ["PLUGIN_NAME", "SegmenterPlugin"]
