"""Backends of interactive segmentation, behind one interface (:mod:`.base`).

``backend_names()`` lists them; ``make_backend(name, checkpoint=...)`` builds one.
Importing this package imports no torch.
"""

from __future__ import annotations

from napari_medseg.interactive.backends.base import (
    BackendEntry,
    BackendError,
    PromptBackend,
    PromptRequest,
    backend_entry,
    backend_names,
    make_backend,
    register_backend,
)

_HERE = "napari_medseg.interactive.backends"
# The default first: weight-free, offline, any modality.
register_backend("grow", f"{_HERE}.seeded", "SeededGrowBackend", "Grow from seeds (no weights)")
register_backend(
    "threshold", f"{_HERE}.threshold", "ConnectedThresholdBackend",
    "Connected threshold region growing (baseline, no weights)",
)
register_backend(
    "sam2", f"{_HERE}.sam2", "Sam2Backend", "SAM2 (your checkpoint)", True, "Apache-2.0"
)
register_backend(
    "nninteractive", f"{_HERE}.nninteractive", "NnInteractiveBackend",
    "nnInteractive (your model folder; weights CC BY-NC-SA)", True, "CC-BY-NC-SA-4.0", True,
)
register_backend(
    "vista3d", f"{_HERE}.vista3d", "Vista3dBackend", "VISTA3D (your bundle folder)", True,
    "read from the bundle (NVIDIA's VISTA3D weights: non-commercial)", True, needs_trust=True,
)

#: The backend a new session uses.
DEFAULT_BACKEND = "grow"

__all__ = [
    "DEFAULT_BACKEND",
    "BackendEntry",
    "BackendError",
    "PromptBackend",
    "PromptRequest",
    "backend_entry",
    "backend_names",
    "make_backend",
    "register_backend",
]
