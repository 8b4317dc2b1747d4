"""The plumbing of the Interactive dock: the backend and session, and one worker update.

- :class:`Engine` is one scan with one backend (name + checkpoint): it builds the
  backend and the :class:`~napari_medseg.interactive.session.PromptSession` the first
  time an update needs them, in the worker (loading a checkpoint, copying the scan
  to float32), and frees the backend when the dock lets it go.
- :func:`update_session` is the worker body: it brings the session to the prompts the
  layers hold now, taking back what is no longer there (the session's own undo, no
  backend call) and adding what is new, one prompt at a time (each its own
  cancellable step: a Cancel keeps every prompt already applied).
- :class:`UpdateJob` is one such update (a :class:`~napari_medseg._napari.jobs.Job`).

Nothing here touches napari or Qt but the job base class.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg._napari.jobs import Job
from napari_medseg.errors import MedsegError, shown_path
from napari_medseg.interactive.backends import (
    BackendError,
    backend_entry,
    make_backend,
)
from napari_medseg.interactive.prompts import Prompt
from napari_medseg.progress import raise_if_cancelled
from napari_medseg.volume import Volume

logger = logging.getLogger(__name__)


def build_backend(name: str, checkpoint: str | None, trust: bool = False) -> Any:
    """The backend ``name``, from ``checkpoint`` where it needs one (``trust``: the user
    trusts that checkpoint's code, for a backend whose checkpoint runs some).

    Raises
    ------
    BackendError
        Naming the method and, where there is one, the checkpoint: the file is
        missing, its backend's package is not installed, or it does not load.
    """
    path = Path(checkpoint).expanduser() if checkpoint else None
    if path is not None and not path.exists():
        raise BackendError(
            f"{shown_path(path)}: no such file or folder; the {name} method needs its "
            "checkpoint there (choose it in the Checkpoint field)."
        )
    options = {"trust": bool(trust)} if backend_entry(name).needs_trust else {}
    try:
        return make_backend(name, path, **options)
    except MedsegError as error:
        if path is not None and str(path) not in str(error):
            raise BackendError(f"{shown_path(path)}: {error}") from error
        raise
    except ImportError as error:
        raise BackendError(
            f"the {name} method cannot run here: {error}. Install what it needs or choose "
            "another method."
        ) from error
    except Exception as error:  # noqa: BLE001 - a checkpoint that does not load
        where = f"{shown_path(path)}: " if path is not None else ""
        raise BackendError(
            f"{where}the {name} method could not load it ({type(error).__name__}: {error}); "
            "check that it is the checkpoint this method takes."
        ) from error


class Engine:
    """One scan and one backend; the session is built on first use (in the worker).

    Parameters
    ----------
    volume : Volume
        The scan on its source grid (``(I, J, K)``, affine voxel -> RAS+ mm).
    backend : str
        Backend name (:func:`~napari_medseg.interactive.backends.backend_names`).
    checkpoint : str or None
        Where the backend's weights are, when it needs them.
    trust : bool
        The user trusts the checkpoint's code (a bundle), for a backend that asks.
    """

    def __init__(
        self, volume: Volume, backend: str, checkpoint: str | None = None, trust: bool = False
    ) -> None:
        self.volume = volume
        self.backend_name = backend
        self.checkpoint = checkpoint or None
        self.trust = bool(trust)
        self.session: Any = None
        self._lock = threading.Lock()

    @property
    def key(self) -> tuple:
        return (self.backend_name, self.checkpoint, self.trust)

    def ensure_session(self) -> Any:
        """The session (built with its backend the first time: may take long)."""
        if self.session is None:
            from napari_medseg.interactive.session import PromptSession

            backend = build_backend(self.backend_name, self.checkpoint, self.trust)
            self.session = PromptSession(self.volume, backend)
        return self.session

    def applied(self) -> tuple[Prompt, ...]:
        """The prompts the session holds (none before it is built)."""
        return self.session.prompts if self.session is not None else ()

    def close(self) -> None:
        """Free the backend (models, caches); the engine is not used again."""
        with self._lock:
            session, self.session = self.session, None
        if session is not None:
            try:
                session.backend.close()
            except Exception:  # noqa: BLE001 - freeing memory must not raise into the UI
                logger.exception("closing the %s backend failed", self.backend_name)


@dataclass(frozen=True)
class UpdateResult:
    """What one update made.

    Attributes
    ----------
    mask : numpy.ndarray
        bool ``(I, J, K)`` on the scan's source grid (the session's own array: read only).
    prompts : int
        Prompts applied.
    added : int
        Prompts the backend was run for in this update.
    seconds : float
        Wall time of the update (in the worker).
    licence : str
        The backend's licence line ("" when it has none).
    non_commercial : bool
        Whether the backend's weights forbid commercial use.
    """

    mask: np.ndarray
    prompts: int
    added: int
    seconds: float
    licence: str = ""
    non_commercial: bool = False


def update_session(
    engine: Engine, wanted: tuple[Prompt, ...], cancel: threading.Event
) -> UpdateResult:
    """Bring ``engine``'s session to the prompts ``wanted`` (the worker body).

    The prompts the session already holds in the same order (the same objects) stay;
    the others are undone (newest first; all at once by a reset when none stays);
    the new ones are added in order.

    Raises
    ------
    BackendError
        The backend cannot be built or fails.
    PromptError
        A prompt lies off the scan.
    Cancelled
        ``cancel`` was set: the session keeps the prompts applied before.
    """
    start = time.perf_counter()
    raise_if_cancelled(cancel, "interactive update cancelled")
    session = engine.ensure_session()
    applied = session.prompts
    keep = 0
    while keep < min(len(applied), len(wanted)) and applied[keep] is wanted[keep]:
        keep += 1
    if keep == 0 and applied:
        session.reset()
    else:
        for _ in range(len(applied) - keep):
            session.undo()
    for prompt in wanted[keep:]:
        session.add(prompt, cancel)
    backend = session.backend
    return UpdateResult(
        mask=session.mask,
        prompts=len(session.prompts),
        added=len(wanted) - keep,
        seconds=time.perf_counter() - start,
        licence=str(getattr(backend, "licence", "") or ""),
        non_commercial=bool(getattr(backend, "non_commercial", False)),
    )


@dataclass(eq=False, kw_only=True)
class UpdateJob(Job):
    """One update of the dock's session.

    Attributes
    ----------
    engine : Engine
    wanted : tuple of Prompt
        The prompts the layers held when it started.
    retire : bool
        The dock let the engine go while this job used it: free it when the job ends.
    """

    engine: Engine
    wanted: tuple[Prompt, ...] = ()
    retire: bool = False
    started: float = field(default_factory=time.perf_counter)

    def end(self) -> None:
        if self.retire:
            self.engine.close()


__all__ = [
    "Engine",
    "UpdateJob",
    "UpdateResult",
    "build_backend",
    "update_session",
]
