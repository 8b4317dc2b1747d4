"""Interactive segmentation from prompts: points, boxes, scribbles and lassos.

A :class:`~.session.PromptSession` holds one scan, the prompts given so far (in world
millimetres, RAS+) and the current 3D mask on the scan's own grid. Each new prompt is
turned into voxel coordinates and handed, with the previous mask, to a
:class:`~.backends.base.PromptBackend`; the session crops the scan around the prompts
and grows the crop while the object reaches its border. Undo and reset walk back the
session's own history.

Backends (:mod:`.backends`): a weight-free seeded 3D method (the default, offline, any
modality), SAM2, nnInteractive and VISTA3D from checkpoints the user gives.

Core module: no napari, no Qt; importing it imports no torch.
"""

from __future__ import annotations

from napari_medseg.interactive.prompts import Prompt, PromptError, VoxelPrompt

__all__ = ["Prompt", "PromptError", "VoxelPrompt"]
