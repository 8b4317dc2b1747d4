"""nnInteractive from a model folder the user gives, through nnInteractive's own session.

nnInteractive (Isensee, Rokuss, Krämer et al. 2025, https://github.com/MIC-DKFZ/nnInteractive)
is a 3D promptable network that takes points, boxes, scribbles and lassos. This backend
runs the installed ``nnInteractive`` package's ``nnInteractiveInferenceSession``: its
normalisation, its prompt encoding (a ball per point, a 2D box, painted scribbles, a filled
lasso), its own crop around each prompt with AutoZoom and refinement, and its undo. So the
session here does not crop (``crops = False``): nnInteractive gets the whole scan once.

**The model folder** is what nnInteractive publishes (``nnInteractive_v1.0`` on Hugging
Face, ``MIC-DKFZ/nnInteractive``) or what its training writes::

    nnInteractive_v1.0/
      plans.json  dataset.json
      inference_session_class.json      (or the newer inference_info.json)
      LICENSE                           (first line: the weights' licence)
      fold_0/checkpoint_final.pth

Its **weights are licensed CC BY-NC-SA 4.0** (non-commercial, share-alike; the package's
code is Apache-2.0): :attr:`NnInteractiveBackend.licence` says so before the folder is
read, and a folder's own ``LICENSE`` (first line) is what the built backend reports.

**Prompts.** The request carries every prompt so far, in scan voxels ``(i, j, k)``;
nnInteractive is given them in the same voxel order (it works in voxels and never
resamples). The backend remembers which prompts its nnInteractive session holds, per scan:

* the same prompts and one more: only the new one is added (one prediction);
* after an undo (the newest prompt gone, another in its place): nnInteractive's own
  single-level ``undo`` and the new prompt;
* anything else (several undos, another scan): ``reset_interactions`` and every prompt
  replayed in order, each with its prediction, so the result is the one the same clicks
  give in nnInteractive itself.

Point -> ``add_point_interaction``; box -> ``add_bbox_interaction`` with the voxels the
box covers (half-open; the published checkpoint takes boxes drawn on one slice only);
scribble -> ``add_scribble_interaction`` with the painted voxels; lasso ->
``add_lasso_interaction`` with the polygon filled on its slice. ``positive=False`` is
nnInteractive's ``include_interaction=False``.

**Trust.** nnInteractive reads the checkpoint with ``torch.load(weights_only=False)``;
the backend first reads it itself with ``weights_only=True`` (as every nnU-Net checkpoint,
:func:`napari_medseg.models.nnunet.read_checkpoint`), so a checkpoint that would run code
is refused before nnInteractive opens it.

Needs the ``nninteractive`` package (``pip install 'napari-medseg[nninteractive]'``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import numpy as np

from napari_medseg.errors import MedsegError, shown_path
from napari_medseg.interactive.backends.base import BackendError, PromptBackend, PromptRequest
from napari_medseg.interactive.prompts import VoxelPrompt
from napari_medseg.progress import raise_if_cancelled

logger = logging.getLogger(__name__)

#: The checkpoint nnInteractive loads from its fold folder.
CHECKPOINT = "checkpoint_final.pth"
#: Session metadata: the current name, then the one the v1.0 release uses.
SESSION_INFO = ("inference_info.json", "inference_session_class.json")

INSTALL_HINT = "Install it with: pip install 'napari-medseg[nninteractive]' (or nninteractive)."
LAYOUT_HINT = (
    "Give the nnInteractive model folder (e.g. nnInteractive_v1.0 from huggingface.co/"
    "MIC-DKFZ/nnInteractive): plans.json, dataset.json, inference_session_class.json and "
    "fold_0/checkpoint_final.pth."
)


def _folder_error(path: Path, problem: str, fix: str = LAYOUT_HINT) -> BackendError:
    return BackendError(f"{shown_path(path)}: {problem} {fix}".rstrip())


# ------------------------------------------------------------------- the model folder
def find_model_folder(path: str | Path) -> tuple[Path, Path]:
    """The model folder and its one ``fold_*`` folder, for a model folder, a fold folder or
    a ``checkpoint_final.pth`` inside one.

    Raises
    ------
    BackendError
        The folder lacks ``plans.json``, ``dataset.json``, the session metadata or a fold
        with ``checkpoint_final.pth`` (several folds, too), or a JSON file is not valid;
        the message names what is missing.
    """
    path = Path(path)
    if not path.exists():
        raise _folder_error(path, "does not exist.")
    if path.is_file():
        if path.name != CHECKPOINT:
            raise _folder_error(path, "is a file, not an nnInteractive model folder.")
        path = path.parent
    fold = None
    if path.name.startswith("fold_") and (path.parent / "plans.json").is_file():
        path, fold = path.parent, path
    for name in ("plans.json", "dataset.json"):
        _read_json(path / name, path)
    if not any((path / name).is_file() for name in SESSION_INFO):
        raise _folder_error(
            path,
            f"has neither {SESSION_INFO[0]} nor {SESSION_INFO[1]} (the metadata that tells "
            "nnInteractive how to encode prompts): it is not an nnInteractive model folder.",
        )
    for name in SESSION_INFO:
        if (path / name).is_file():
            _read_json(path / name, path, allow_string=True)
            break
    if fold is None:
        folds = sorted(p for p in path.glob("fold_*") if p.is_dir())
        if not folds:
            raise _folder_error(path, f"has no fold_N folder with {CHECKPOINT}.")
        if len(folds) > 1:
            names = ", ".join(p.name for p in folds)
            raise _folder_error(
                path,
                f"has several fold folders ({names}); nnInteractive runs one.",
                "Give the fold folder to use (e.g. FOLDER/fold_0).",
            )
        fold = folds[0]
    if not (fold / CHECKPOINT).is_file():
        raise _folder_error(fold, f"has no {CHECKPOINT}.")
    return path, fold


def _read_json(path: Path, folder: Path, allow_string: bool = False):
    if not path.is_file():
        raise _folder_error(folder, f"has no {path.name}: it is not an nnInteractive model folder.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise _folder_error(path, f"is not valid JSON ({error}).", "") from None
    if not isinstance(data, dict) and not (allow_string and isinstance(data, str)):
        raise _folder_error(path, "is not a JSON object.", "")
    return data


def check_checkpoint(folder: Path, fold: Path) -> dict:
    """Read the fold's checkpoint with ``weights_only=True`` and check it fits the plans.

    Returns the checkpoint (its ``network_weights``, ``trainer_name``, ``init_args``).

    Raises
    ------
    BackendError
        A pickle that would run code, not an nnU-Net checkpoint, or a configuration the
        plans do not have.
    """
    from napari_medseg.models.nnunet import read_checkpoint

    checkpoint = fold / CHECKPOINT
    try:
        data = read_checkpoint(checkpoint)
    except MedsegError as error:
        raise BackendError(str(error)) from None
    init_args = data.get("init_args") if isinstance(data.get("init_args"), dict) else {}
    configuration = init_args.get("configuration")
    if not isinstance(configuration, str) or not configuration:
        raise _folder_error(
            checkpoint,
            "does not say its configuration (init_args.configuration is missing).",
            "Use the checkpoint_final.pth nnInteractive's training wrote.",
        )
    plans = _read_json(folder / "plans.json", folder)
    if configuration not in (plans.get("configurations") or {}):
        raise _folder_error(
            folder / "plans.json",
            f"has no configuration {configuration!r}, which {CHECKPOINT} was trained with.",
            "Put the plans.json of the same training beside the fold folder.",
        )
    if not data.get("trainer_name"):
        raise _folder_error(checkpoint, "does not name its trainer (trainer_name).", "")
    return data


# ----------------------------------------------------------------------- the prompts
def prompt_key(prompt: VoxelPrompt) -> tuple:
    """A hashable identity of a prompt (kind, sign, vertices), for the replay cache."""
    return (
        prompt.kind,
        bool(prompt.positive),
        prompt.slice_axis,
        tuple(np.round(np.asarray(prompt.ijk, dtype=np.float64), 6).ravel().tolist()),
    )


def box_bounds(prompt: VoxelPrompt, shape) -> list[list[int]]:
    """The voxels a box covers as nnInteractive's half-open ``[[i0, i1], [j0, j1], [k0, k1]]``
    (a box on one slice is one voxel thick across it)."""
    voxels = np.clip(prompt.voxels(), 0, np.asarray(shape) - 1)
    low, high = voxels.min(axis=0), voxels.max(axis=0) + 1
    return [[int(a), int(b)] for a, b in zip(low, high, strict=True)]


def scribble_mask(prompt: VoxelPrompt, shape) -> tuple[np.ndarray, list[list[int]]]:
    """The painted voxels as a uint8 crop and its half-open box in the image."""
    voxels = np.unique(np.clip(prompt.voxels(), 0, np.asarray(shape) - 1), axis=0)
    low = voxels.min(axis=0)
    high = voxels.max(axis=0) + 1
    crop = np.zeros(tuple(high - low), dtype=np.uint8)
    crop[tuple((voxels - low).T)] = 1
    return crop, [[int(a), int(b)] for a, b in zip(low, high, strict=True)]


def lasso_mask(prompt: VoxelPrompt, shape) -> tuple[np.ndarray, list[list[int]]]:
    """The lasso's polygon filled on its slice (voxel centres inside it, and the voxels
    under its outline), as a uint8 crop one voxel thick across the slice, and its box.

    Raises
    ------
    BackendError
        The lasso's vertices do not lie on one slice.
    """
    from skimage.draw import polygon, polygon_perimeter

    if prompt.slice_axis is None:
        raise BackendError(
            "nnInteractive takes a lasso drawn on one slice; this lasso's vertices span "
            "several slices along every axis. Draw it on one slice."
        )
    axis = prompt.slice_axis
    plane_axes = [a for a in range(3) if a != axis]
    shape = np.asarray(shape)
    ijk = np.clip(prompt.ijk, 0, shape - 1)
    rows, cols = ijk[:, plane_axes[0]], ijk[:, plane_axes[1]]
    plane_shape = (int(shape[plane_axes[0]]), int(shape[plane_axes[1]]))
    plane = np.zeros(plane_shape, dtype=np.uint8)
    rr, cc = polygon(rows, cols, shape=plane_shape)
    plane[rr, cc] = 1
    rr, cc = polygon_perimeter(np.rint(rows), np.rint(cols), shape=plane_shape)
    plane[rr, cc] = 1
    where = [np.flatnonzero(plane.any(axis=1 - a)) for a in range(2)]
    low = [int(w[0]) for w in where]
    high = [int(w[-1]) + 1 for w in where]
    index = int(np.rint(ijk[0, axis]))
    crop = np.expand_dims(plane[low[0] : high[0], low[1] : high[1]], axis)
    bounds = [[0, 0]] * 3
    bounds[axis] = [index, index + 1]
    for a, lo, hi in zip(plane_axes, low, high, strict=True):
        bounds[a] = [lo, hi]
    return crop, bounds


def add_prompt(session, prompt: VoxelPrompt, shape) -> None:
    """Give one prompt to an ``nnInteractiveInferenceSession`` (and let it predict)."""
    include = bool(prompt.positive)
    if prompt.kind == "point":
        session.add_point_interaction(tuple(int(v) for v in prompt.voxels()[0]), include)
    elif prompt.kind == "box":
        session.add_bbox_interaction(box_bounds(prompt, shape), include)
    elif prompt.kind == "scribble":
        crop, bounds = scribble_mask(prompt, shape)
        session.add_scribble_interaction(crop, include, interaction_bbox=bounds)
    elif prompt.kind == "lasso":
        crop, bounds = lasso_mask(prompt, shape)
        session.add_lasso_interaction(crop, include, interaction_bbox=bounds)
    else:  # pragma: no cover - PromptError refuses other kinds first
        raise BackendError(f"nnInteractive takes no {prompt.kind} prompts.")


def _wait_for_image(session) -> None:
    """Wait for nnInteractive's background preparation of the image (normalisation, the
    interaction channels) and raise its error here rather than at the first prompt."""
    future = getattr(session, "preprocess_future", None)
    if future is None:
        return
    try:
        future.result()
    except Exception as error:
        raise BackendError(
            f"nnInteractive cannot prepare the scan ({type(error).__name__}: {error})."
        ) from None
    session.preprocess_future = None


@contextlib.contextmanager
def _quiet():
    """nnInteractive reports with ``print``: into this module's debug log instead."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        text = buffer.getvalue().strip()
        if text:
            logger.debug("nnInteractive: %s", text)


# ----------------------------------------------------------------------- the backend
class NnInteractiveBackend(PromptBackend):
    """nnInteractive's session on a model folder (see the module docstring).

    Parameters
    ----------
    checkpoint : Path
        The model folder (or its ``fold_N`` folder, or ``fold_N/checkpoint_final.pth``).
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``...
    autozoom : bool
        nnInteractive's AutoZoom (widen its crop while the object reaches its border);
        on, as in nnInteractive's own tools.

    Raises
    ------
    BackendError
        nnInteractive is not installed, or the folder is not a usable model folder (the
        message names the folder and the missing piece).
    """

    name = "nninteractive"
    title = "nnInteractive (your model folder; weights CC BY-NC-SA)"
    licence = "CC-BY-NC-SA-4.0"
    non_commercial = True
    crops = False
    needs_checkpoint = True

    def __init__(self, checkpoint: Path, device: str = "auto", autozoom: bool = True) -> None:
        folder, fold = find_model_folder(checkpoint)
        try:
            import torch
            from nnInteractive.inference.inference_session import (
                nnInteractiveInferenceSession,
            )
        except ImportError as error:
            raise BackendError(
                f"the nninteractive method needs the nnInteractive package ({error}). "
                + INSTALL_HINT
            ) from None
        from napari_medseg.inference.devices import resolve_device
        from napari_medseg.models.licence import is_non_commercial, licence_of_folder

        check_checkpoint(folder, fold)
        self.folder = folder
        self.fold = fold
        stated, _file = licence_of_folder(folder)
        if stated != "unknown":
            self.licence = stated.replace(" ", "-") if stated.upper().startswith("CC ") else stated
            self.non_commercial = is_non_commercial(self.licence)
        self.device = resolve_device(device)
        with _quiet():
            self._session = nnInteractiveInferenceSession(
                device=self.device,
                use_torch_compile=False,
                verbose=False,
                torch_n_threads=torch.get_num_threads(),  # nnInteractive sets it process-wide
                do_autozoom=bool(autozoom),
            )
            try:
                self._session.initialize_from_trained_model_folder(
                    str(folder), use_fold=fold.name[len("fold_") :]
                )
            except Exception as error:  # its asserts, torch's and nnU-Net's errors
                raise _folder_error(
                    folder,
                    f"nnInteractive cannot load this model ({type(error).__name__}: {error}).",
                    "Check that plans.json and the session metadata belong to "
                    f"{fold.name}/{CHECKPOINT}.",
                ) from None
        self._key: tuple | None = None  # (scan_key, offset, shape) of the image it holds
        self._applied: list[tuple] = []  # prompt_key of what its session holds, in order
        self._buffer = None

    # -- state --------------------------------------------------------------------------
    def _set_image(self, request: PromptRequest) -> None:
        import torch

        image = np.asarray(request.image, dtype=np.float32)
        if not np.any(image):
            raise BackendError(
                "nnInteractive cannot normalise a scan that is zero everywhere; open a scan "
                "with content."
            )
        self._key = None
        self._session.set_image(image[None])
        _wait_for_image(self._session)
        self._buffer = torch.zeros(image.shape, dtype=torch.uint8)
        self._session.set_target_buffer(self._buffer)
        self._applied = []
        self._key = (request.scan_key, tuple(request.offset), image.shape)

    def _replay(self, request: PromptRequest, prompts, keys) -> None:
        """Bring the session to hold exactly ``prompts`` (see the module docstring)."""
        shape = request.image.shape
        common = 0
        for held, wanted in zip(self._applied, keys, strict=False):
            if held != wanted:
                break
            common += 1
        if common < len(self._applied):
            undone = False
            if common == len(self._applied) - 1 and self._session.supports_undo:
                undone = bool(self._session.undo())
            if undone:
                self._applied.pop()
            else:
                self._session.reset_interactions()
                self._applied = []
                common = 0
        for index in range(common, len(prompts)):
            raise_if_cancelled(request.cancel, "interactive segmentation cancelled")
            prompt = prompts[index]
            try:
                add_prompt(self._session, prompt, shape)
            except ValueError as error:
                # nnInteractive checks a prompt before it changes anything, but start
                # over next time rather than trust a half-added interaction
                self._reset_state()
                raise BackendError(
                    f"nnInteractive refuses the {prompt.kind} prompt: {error}"
                    + (" Draw the box on one slice." if prompt.kind == "box" else "")
                ) from None
            except BaseException:
                self._reset_state()
                raise
            self._applied.append(keys[index])

    def _reset_state(self) -> None:
        """Forget what the session holds: the next request starts from a reset."""
        self._applied = []
        if self._session is not None and self._key is not None:
            self._session.reset_interactions()

    def segment(self, request: PromptRequest) -> np.ndarray:
        prompts = tuple(request.prompts)
        keys = [prompt_key(p) for p in prompts]
        key = (request.scan_key, tuple(request.offset), tuple(request.image.shape))
        with _quiet():
            if key != self._key:
                self._set_image(request)
            if not prompts:
                self._reset_state()
            else:
                self._replay(request, prompts, keys)
        return self._buffer.numpy().astype(bool)

    def reset(self) -> None:
        if self._key is not None:
            with _quiet():
                self._session.reset_interactions()
        self._applied = []

    def close(self) -> None:
        session, self._session = self._session, None
        executor = getattr(session, "executor", None)
        if executor is not None:  # its image thread; not joined from itself when collected
            with contextlib.suppress(BackendError):
                _wait_for_image(session)
            executor.shutdown(wait=True)
        self._buffer = None
        self._key = None
        self._applied = []


__all__ = [
    "NnInteractiveBackend",
    "add_prompt",
    "box_bounds",
    "check_checkpoint",
    "find_model_folder",
    "lasso_mask",
    "scribble_mask",
]
