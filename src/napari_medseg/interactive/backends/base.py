"""The one interface every interactive-segmentation backend implements.

A backend turns a :class:`PromptRequest` (an image array, its voxel spacing, the prompts
so far in the array's voxel coordinates, the mask before the newest prompt) into a
boolean mask of the same shape. The :class:`~napari_medseg.interactive.session.PromptSession`
owns everything else: world -> voxel coordinates, the crop, undo, reset.

A backend may keep state between calls on the same scan (SAM2's frame embeddings,
nnInteractive's session): the request says which scan it is (``scan_key``) and where the
crop sits, and always carries the whole prompt list, so after an undo a stateful backend
replays from its start.

Backends register by name with :func:`register_backend` (lazily: the module is imported
only when the backend is built, so listing them imports no torch).
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from napari_medseg.errors import MedsegError
from napari_medseg.interactive.prompts import VoxelPrompt


class BackendError(MedsegError):
    """A backend cannot be built (missing package, bad checkpoint) or fails on a prompt."""


@dataclass(frozen=True)
class PromptRequest:
    """What a backend is asked to segment.

    Attributes
    ----------
    image : numpy.ndarray
        float32, shape ``(I, J, K)``: the scan (or the crop of it) in the scan's own voxel
        order, in its units (HU for CT).
    spacing_mm : tuple of float
        Voxel step along ``(I, J, K)`` in mm.
    prompts : tuple of VoxelPrompt
        Every prompt so far, in the order given, in ``image``'s voxel coordinates.
    previous : numpy.ndarray or None
        bool, shape ``(I, J, K)``: the mask before the newest prompt (None for the first).
    offset : tuple of int
        Where ``image`` starts in the scan, in voxels (``(0, 0, 0)`` for the whole scan).
    scan_shape : tuple of int
        The whole scan's shape ``(I, J, K)``.
    scan_key : int
        Identifies the scan within a process (same scan, same key), for backends that
        cache per-scan work.
    cancel : threading.Event or None
        Set when the user cancels; a long backend checks it and raises
        :class:`~napari_medseg.errors.Cancelled`.
    affine : numpy.ndarray or None
        4x4 voxel -> RAS+ mm matrix of ``image`` (the scan's affine moved to the crop's
        first voxel), for backends that resample to their own grid (VISTA3D); None when
        unknown (then voxels are taken as axis-aligned steps of ``spacing_mm``).
    will_widen : bool
        True when the session will widen the crop and ask again if the mask reaches a
        side of it that is not the scan's edge: a backend that sees the object go on past
        the crop may then return a rough mask (it is not shown) and save the fine work
        for the wider crop.
    """

    image: np.ndarray
    spacing_mm: tuple[float, float, float]
    prompts: tuple[VoxelPrompt, ...]
    previous: np.ndarray | None = None
    offset: tuple[int, int, int] = (0, 0, 0)
    scan_shape: tuple[int, int, int] | None = None
    scan_key: int = 0
    cancel: threading.Event | None = None
    affine: np.ndarray | None = None
    will_widen: bool = False


class PromptBackend:
    """Base class of the backends.

    Class attributes
    ----------------
    name : str
        The key users type (``--method NAME``).
    title : str
        One line for menus.
    licence : str
        The licence of the weights it runs ("" when it needs none); shown before use.
    non_commercial : bool
        True when the weights forbid commercial use (shown as a warning).
    crops : bool
        True when the session should crop the scan around the prompts (a backend that
        needs the whole scan, e.g. to propagate through every slice, says False).
    needs_checkpoint : bool
        True when the backend is built from a file or folder the user gives.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    licence: ClassVar[str] = ""
    non_commercial: ClassVar[bool] = False
    crops: ClassVar[bool] = True
    needs_checkpoint: ClassVar[bool] = False

    def segment(self, request: PromptRequest) -> np.ndarray:
        """The mask for ``request``: bool array of ``request.image``'s shape."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget per-scan state (called on the session's reset)."""

    def close(self) -> None:
        """Free memory held by the backend (models, caches)."""


@dataclass(frozen=True)
class BackendEntry:
    """A registered backend, known without importing its module (so without torch).

    Attributes
    ----------
    name : str
        The key users type (``--method NAME``).
    module, class_name : str
        Where the backend class lives.
    title : str
        One line for menus.
    needs_checkpoint : bool
        Built from a file or folder the user gives.
    licence : str
        Licence of the weights it runs ("" when it runs none); shown before use.
    non_commercial : bool
        The weights forbid commercial use.
    needs_trust : bool
        Its checkpoint runs code (a MONAI bundle's config): the backend takes
        ``trust=True`` only on the user's explicit word (``--trust-bundle``, napari's
        "Trust this bundle").
    """

    name: str
    module: str
    class_name: str
    title: str
    needs_checkpoint: bool = False
    licence: str = ""
    non_commercial: bool = False
    needs_trust: bool = False


#: name -> entry, in registration order (the default first); filled by register_backend.
_REGISTRY: dict[str, BackendEntry] = {}


def register_backend(
    name: str,
    module: str,
    class_name: str,
    title: str,
    needs_checkpoint: bool = False,
    licence: str = "",
    non_commercial: bool = False,
    needs_trust: bool = False,
) -> None:
    """Make a backend known by ``name`` without importing its module yet."""
    _REGISTRY[name] = BackendEntry(
        name, module, class_name, title, needs_checkpoint, licence, non_commercial, needs_trust
    )


def backend_names() -> dict[str, str]:
    """Registered backends, name -> one-line title, the default first."""
    return {name: entry.title for name, entry in _REGISTRY.items()}


def backend_entry(name: str) -> BackendEntry:
    """The registered entry of ``name``; :class:`BackendError` if there is none."""
    if name not in _REGISTRY:
        raise BackendError(
            f"unknown interactive method {name!r}; choose one of {', '.join(_REGISTRY)}."
        )
    return _REGISTRY[name]


def make_backend(name: str, checkpoint: str | Path | None = None, **options) -> PromptBackend:
    """Build the backend ``name`` (from ``checkpoint`` where it needs one).

    Raises
    ------
    BackendError
        Unknown name, a checkpoint missing where one is needed (or given where none is),
        the backend's package not installed, or a checkpoint that does not load; the
        message names the file and the fix.
    """
    entry = backend_entry(name)
    if entry.needs_checkpoint and checkpoint is None:
        raise BackendError(
            f"the {name} method runs weights you give: pass --checkpoint PATH "
            "(in napari: the Checkpoint field)."
        )
    cls = getattr(importlib.import_module(entry.module), entry.class_name)
    if entry.needs_checkpoint:
        return cls(Path(checkpoint), **options)
    if checkpoint is not None:
        raise BackendError(f"the {name} method needs no checkpoint; leave --checkpoint out.")
    return cls(**options)


__all__ = [
    "BackendEntry",
    "BackendError",
    "PromptBackend",
    "PromptRequest",
    "backend_entry",
    "backend_names",
    "make_backend",
    "register_backend",
]
