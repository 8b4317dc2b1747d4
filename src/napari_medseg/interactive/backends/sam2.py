"""SAM2 from a checkpoint the user gives, through SAM2's own video predictor.

SAM 2 (Ravi et al. 2024, Meta; code and weights Apache-2.0) segments an object in a
video from clicks or a box on some frames and tracks it through the others. A scan is
treated as such a video: its slices along one voxel axis are the frames. This backend
runs the installed ``sam2`` package's ``SAM2VideoPredictor`` (built by its
``build_sam2_video_predictor``), with its own frame preprocessing, prompt encoding,
memory and propagation; what is here is only the way in (slices as frames, prompts as
clicks) and the way out (the frames' masks as one 3D mask). So the session does not
crop (``crops = False``): SAM2 gets the whole scan.

**The checkpoint** is one of Meta's published files (``sam2_hiera_tiny.pt`` ...
``sam2.1_hiera_large.pt``) or a fine-tune saved the same way (``{"model": state_dict}``).
It is read with ``torch.load(weights_only=True)`` (a file that would run code when
loaded is refused), and its model config is read from its weights: the image encoder's
width and depth give the size (tiny, small, base+, large) and the SAM 2.1 parameters
(``no_obj_embed_spatial``) the version. ``config=`` names the package's config instead
(``"sam2.1_hiera_t"``); it must fit the weights. ``image_size=`` overrides the config's
1024 (e.g. 512 for a fine-tune trained at 512, such as MedSAM2's; the published weights
were trained at 1024).

**Frames.** The slices along the frame axis, in the array's own voxel order: frame
``n`` is ``image.take(n, axis)``; its rows run along the lower of the two other axes, its
columns along the higher. Each is windowed to 0..255 and given to SAM2 as a grey RGB
image, the way medical SAM users prepare scans (MedSAM, MedSAM2):

* CT (the scan's 1st percentile is at or below -500, i.e. it holds air in HU): a CT
  window, by default the abdominal soft-tissue window (W 400, L 50 HU;
  :mod:`napari_medseg.window_presets`);
* anything else (MR, PET...): the 0.5th to 99.5th percentile of the scan (of at most
  four million of its voxels, evenly strided);
* ``window=`` sets it: a preset name (``"lung"``) or ``(low, high)`` in the scan's units.

From 0..255 on, the frames go through what SAM2's own JPEG-folder loader does (PIL's
resize to the model's square input, /255, ImageNet mean and std), from memory: nothing
is written to disk and nothing is compressed. The frames of a scan, SAM2's state and the
image features of the frames it encoded are kept (per ``scan_key``) until another scan
comes, so the next click re-runs SAM2's memory and decoder but not its image encoder
(features kept up to ``feature_cache_mb``; the frames encoded first are kept).

**Which axis.** A box (or lasso) is drawn on one slice: its slice axis is the frame
axis. Points carry no view, so with points alone the frame axis is the ``slice_axis``
option, else the scan's axial axis (the voxel axis closest to superior in the request's
affine), else (no affine) the axis with the coarsest spacing, or ``K`` on an isotropic
grid. Boxes drawn on another axis than the first box are refused (SAM2 follows one stack
of slices).

**Prompts -> SAM2.** Every request replays all prompts on a fresh SAM2 state (so undo
and replay give the same mask as the same clicks given once): each prompted frame gets
one ``add_new_points_or_box`` call with its points (positive: label 1, negative: 0, at
``x`` = column, ``y`` = row, voxel centres at integers, SAM2's pixel convention) and its
box (the newest box drawn on that frame; a lasso gives its bounding box; a 3D box its
rectangle on the frame through its centre); a scribble gives up to
:data:`SCRIBBLE_POINTS` of its voxels per frame as points. Then ``propagate_in_video``
forwards from the first prompted frame to the last frame and backwards to the first; a
voxel is in the mask where SAM2's mask logit on its frame is above 0.

Runs on the CPU (slowly: seconds per slice with the tiny model at 1024, more with the
larger ones and a long memory) and on CUDA
(``device="auto"`` picks it when present); float32 on both.

Needs the ``sam2`` package (``pip install 'napari-medseg[sam2]'``). PyPI's ``sam2``
1.1.0 is Meta's SAM 2 / 2.1 code as a source package;
``SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2`` builds it against the torch
already installed (an isolated build fetches another torch first). Its video predictor
imports no torchvision (only its image predictor and mask generator do), so a torch
without a matching torchvision runs it.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import re
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_medseg.errors import MedsegError, shown_path
from napari_medseg.interactive.backends.base import BackendError, PromptBackend, PromptRequest
from napari_medseg.interactive.prompts import VoxelPrompt
from napari_medseg.progress import raise_if_cancelled
from napari_medseg.window_presets import get_preset

logger = logging.getLogger(__name__)

INSTALL_HINT = "Install it with: pip install 'napari-medseg[sam2]' (or pip install sam2)."
CHECKPOINT_HINT = (
    "Give a SAM2 checkpoint file as Meta publishes them (sam2_hiera_tiny.pt ... "
    "sam2.1_hiera_large.pt), or weights saved as torch.save({'model': model.state_dict()}, path)."
)

#: The published SAM2 image encoders: (trunk width, number of Hiera blocks) -> size.
SIZES = {(96, 12): "t", (96, 16): "s", (112, 24): "b+", (144, 48): "l"}
SIZE_NAMES = {"t": "tiny", "s": "small", "b+": "base+", "l": "large"}
#: The package's config of each (version, size), as ``build_sam2_video_predictor`` names it.
CONFIGS = {
    (version, size): f"configs/{version}/{version}_hiera_{size}.yaml"
    for version in ("sam2", "sam2.1")
    for size in SIZE_NAMES
}
#: Keys only a SAM 2.1 checkpoint has.
SAM21_KEYS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight")
#: The key whose first dimension is the image encoder's width.
PATCH_KEY = "image_encoder.trunk.patch_embed.proj.weight"
_BLOCK = re.compile(r"image_encoder\.trunk\.blocks\.(\d+)\.")

#: The CT window used when none is given (abdominal soft tissue).
DEFAULT_CT_WINDOW = "abdomen"
#: A scan whose 1st percentile is at or below this (HU: air) is windowed as CT.
CT_AIR_HU = -500.0
#: The percentiles that window a scan that is not CT (MedSAM's MR preprocessing).
PERCENTILES = (0.5, 99.5)
#: Most scribble voxels given to SAM2 as points, per scribble and frame.
SCRIBBLE_POINTS = 8
#: The object id every prompt belongs to (the session segments one object).
OBJECT_ID = 1
#: How many voxels the window's percentiles are computed from, at most.
_SAMPLE_VOXELS = 4_000_000


def _error(path: Path, problem: str, fix: str = CHECKPOINT_HINT) -> BackendError:
    return BackendError(f"{shown_path(path)}: {problem} {fix}".rstrip())


# --------------------------------------------------------------------- the checkpoint
def read_checkpoint(path: str | Path) -> dict:
    """The state dict of a SAM2 checkpoint, read with ``torch.load(weights_only=True)``.

    Raises
    ------
    BackendError
        The file is missing or a folder, is not a PyTorch checkpoint, or holds pickled
        Python objects that would run code when loaded; the message names the file.
    """
    from napari_medseg.models.build import read_state_dict
    from napari_medseg.models.errors import ModelLoadError

    path = Path(path)
    if not path.exists():
        raise _error(path, "SAM2 checkpoint not found.")
    if path.is_dir():
        raise _error(path, "is a folder, not a SAM2 checkpoint file.")
    try:
        return read_state_dict(path)
    except ModelLoadError as error:
        raise _error(path, error.problem) from None


def identify_checkpoint(state: dict, path: str | Path = "checkpoint") -> tuple[str, str]:
    """``(version, size)`` of SAM2 weights: ``("sam2.1", "t")`` for SAM 2.1 tiny.

    Raises
    ------
    BackendError
        The weights are not a SAM2 model, or a SAM2 of a width and depth no published
        config has.
    """
    path = Path(path)
    if PATCH_KEY not in state or not any(_BLOCK.match(key) for key in state):
        some = ", ".join(sorted(state)[:3])
        raise _error(
            path,
            f"holds weights of another network, not SAM2 (no {PATCH_KEY}; its first keys: "
            f"{some}).",
        )
    width = int(state[PATCH_KEY].shape[0])
    blocks = 1 + max(int(m.group(1)) for key in state if (m := _BLOCK.match(key)))
    version = "sam2.1" if all(key in state for key in SAM21_KEYS) else "sam2"
    size = SIZES.get((width, blocks))
    if size is None:
        known = ", ".join(f"{SIZE_NAMES[s]} ({w} wide, {b} blocks)" for (w, b), s in SIZES.items())
        raise _error(
            path,
            f"is a SAM2 image encoder {width} wide with {blocks} blocks, which matches no "
            f"published SAM2 size ({known}).",
            "Pass config= naming the package config it was trained with.",
        )
    return version, size


def config_for(name: str) -> str:
    """The package config path for ``name``: ``"sam2.1_hiera_t"``, its ``.yaml`` file name
    or its path as ``build_sam2_video_predictor`` takes it.

    Raises
    ------
    BackendError
        No such config among the published ones.
    """
    stem = Path(str(name)).name.removesuffix(".yaml")
    for config in CONFIGS.values():
        if Path(config).stem == stem:
            return config
    choices = ", ".join(Path(c).stem for c in CONFIGS.values())
    raise BackendError(f"unknown SAM2 config {name!r}; choose one of {choices}.")


def _describe(version: str, size: str) -> str:
    return f"SAM {version.removeprefix('sam')} {SIZE_NAMES[size]}"


def _check_weights_fit(model, state: dict, path: Path, config: str) -> None:
    """Every parameter of ``model`` is in ``state`` with its shape, and nothing else is."""
    from napari_medseg.models.build import state_dict_mismatches

    problems = state_dict_mismatches(model, state)
    if problems:
        raise _error(
            path,
            f"does not fit SAM2 config {Path(config).stem}: {'; '.join(problems)}.",
            "Leave config out (it is read from the weights) or name the config they were "
            "trained with.",
        )


# ------------------------------------------------------------------------ the frames
def window_limits(image: np.ndarray, window=None) -> tuple[float, float]:
    """``(low, high)`` in the image's units that map to 0 and 255 (module docstring).

    Parameters
    ----------
    image : numpy.ndarray
        The scan, any shape, in its units (HU for CT).
    window : None, str or (float, float)
        None: a CT window (:data:`DEFAULT_CT_WINDOW`) when the scan holds air in HU, else
        its 0.5th to 99.5th percentile; a preset name from
        :mod:`napari_medseg.window_presets`; or ``(low, high)``.
    """
    if window is not None:
        if isinstance(window, str):
            try:
                return get_preset(window).limits
            except KeyError as error:
                raise BackendError(str(error).strip("\"'")) from None
        try:
            low, high = (float(v) for v in window)
        except (TypeError, ValueError):
            low = high = float("nan")
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise BackendError(
                f"the SAM2 window {window!r} is neither a CT window name nor (low, high) "
                "with low < high."
            )
        return low, high
    sample = image
    if image.size > _SAMPLE_VOXELS:
        step = int(np.ceil((image.size / _SAMPLE_VOXELS) ** (1 / image.ndim)))
        sample = image[(slice(None, None, step),) * image.ndim]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    if np.percentile(sample, 1.0) <= CT_AIR_HU:
        return get_preset(DEFAULT_CT_WINDOW).limits
    low, high = (float(v) for v in np.percentile(sample, PERCENTILES))
    return (low, high) if high > low else (low, low + 1.0)


def to_frames(image: np.ndarray, axis: int, limits: tuple[float, float]) -> np.ndarray:
    """The slices along ``axis`` windowed to uint8, shape ``(N, rows, columns)``.

    Frame ``n`` is ``image.take(n, axis)``; ``limits`` map to 0 and 255 (rounded,
    clipped; NaN becomes 0).
    """
    low, high = limits
    slices = np.moveaxis(np.asarray(image), axis, 0)
    frames = np.empty(slices.shape, dtype=np.uint8)
    for index, plane in enumerate(slices):  # a slice at a time: no scan-sized temporaries
        scaled = (plane.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
        frames[index] = np.rint(np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255))
    return frames


def frame_axes(axis: int) -> tuple[int, int]:
    """The array axes of a frame's rows and columns, for frames along ``axis``."""
    rows, columns = (a for a in range(3) if a != axis)
    return rows, columns


class _Frames:
    """SAM2's normalised input frames, made on demand from uint8 slices.

    Does what SAM2's JPEG-folder loader does to each image (``sam2.utils.misc``: grey to
    RGB, PIL's resize to ``image_size`` squared, /255 as float32, minus ImageNet's mean,
    over its std), from memory; a sequence, as SAM2's own asynchronous loader is.
    """

    def __init__(self, frames: np.ndarray, image_size: int, mean, std, device) -> None:
        import torch

        self.frames = frames
        self.image_size = int(image_size)
        self.height, self.width = (int(n) for n in frames.shape[1:])
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]
        self.device = device

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int):
        import torch
        from PIL import Image

        grey = self.frames[index]
        rgb = Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2))
        resized = np.array(rgb.resize((self.image_size, self.image_size))) / 255.0
        image = torch.from_numpy(resized).permute(2, 0, 1).to(torch.float32)
        image = image.to(self.device)
        image -= self.mean.to(self.device)
        image /= self.std.to(self.device)
        return image


_LOADER_LOCK = threading.Lock()


@contextlib.contextmanager
def _frames_from_memory():
    """Let ``SAM2VideoPredictor.init_state`` take a :class:`_Frames` as its video.

    SAM2 reads a video from a JPEG folder or an MP4 file only; for the length of this
    block its ``load_video_frames`` also accepts a :class:`_Frames` (anything else still
    goes to SAM2's own loader), so ``init_state`` itself builds the state.
    """
    import sam2.sam2_video_predictor as video

    with _LOADER_LOCK:
        original = video.load_video_frames

        def load_video_frames(video_path, *args, **kwargs):
            if isinstance(video_path, _Frames):
                return video_path, video_path.height, video_path.width
            return original(video_path, *args, **kwargs)

        video.load_video_frames = load_video_frames
        try:
            yield
        finally:
            video.load_video_frames = original


def _loader_normalisation() -> tuple[tuple, tuple]:
    """The mean and std SAM2's frame loader normalises with (its own defaults)."""
    from sam2.utils.misc import load_video_frames

    parameters = inspect.signature(load_video_frames).parameters
    return tuple(parameters["img_mean"].default), tuple(parameters["img_std"].default)


class _FeatureCache(dict):
    """Image features by frame, kept up to a size in bytes (first come, first kept).

    SAM2 keeps the features of the newest frame only; a scan is clicked on again and
    again, so these keep every frame's that fits. The position encodings (the same for
    every frame of one size) are kept once.
    """

    def __init__(self, budget_bytes: float) -> None:
        super().__init__()
        self.budget = float(budget_bytes)
        self.used = 0
        self._positions: list | None = None

    def add(self, entries: dict) -> None:
        import torch

        for frame, (image, features) in entries.items():
            if frame in self:
                continue
            positions = features["vision_pos_enc"]
            if self._positions is None:
                self._positions = list(positions)
                self.used += sum(t.numel() * t.element_size() for t in positions)
            shared = len(positions) == len(self._positions) and all(
                a.shape == b.shape and torch.equal(a, b)
                for a, b in zip(positions, self._positions, strict=True)
            )
            if shared:
                features = {**features, "vision_pos_enc": self._positions}
            own = [image, *features["backbone_fpn"], *([] if shared else positions)]
            size = sum(t.numel() * t.element_size() for t in own)
            if self.used + size > self.budget and len(self) > 0:
                continue
            self.used += size
            self[frame] = (image, features)


class _State(dict):
    """SAM2's inference state for one scan, keeping the image features of its frames.

    SAM2 replaces ``state["cached_features"]`` with the newest frame's features on each
    miss; here that assignment adds them to a :class:`_FeatureCache` instead.
    """

    def __init__(self, state: dict, budget_bytes: float) -> None:
        super().__init__(state)
        self.features = _FeatureCache(budget_bytes)
        self.features.add(state.get("cached_features", {}))
        super().__setitem__("cached_features", self.features)

    def __setitem__(self, key, value) -> None:
        if key == "cached_features":
            self.features.add(value)
            return
        super().__setitem__(key, value)


# ----------------------------------------------------------------------- the prompts
@dataclass
class FramePrompt:
    """What SAM2 is given on one frame: points ``(x, y)`` with labels, and a box."""

    points: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None


def frame_axis(prompts, spacing_mm, slice_axis: int | None = None, affine=None) -> int:
    """The voxel axis the frames are taken along (module docstring, *Which axis*).

    Parameters
    ----------
    prompts : sequence of VoxelPrompt
    spacing_mm : (float, float, float)
    slice_axis : int or None
        The backend's option.
    affine : numpy.ndarray or None
        4x4 voxel -> RAS+ mm of the image.
    """
    for prompt in prompts:
        if prompt.kind in ("box", "lasso") and prompt.slice_axis is not None:
            return int(prompt.slice_axis)
    if slice_axis is not None:
        return int(slice_axis)
    if affine is not None:
        directions = np.asarray(affine, dtype=np.float64)[:3, :3]
        lengths = np.linalg.norm(directions, axis=0)
        if np.all(lengths > 0):
            return int(np.argmax(np.abs(directions[2]) / lengths))  # most superior
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    coarsest = np.flatnonzero(spacing >= spacing.max() * (1 - 1e-3))
    return int(coarsest[0]) if len(coarsest) == 1 else 2


def frame_prompts(prompts, axis: int, n_frames: int) -> dict[int, FramePrompt]:
    """The prompts as SAM2 inputs per frame, frames in the order first prompted.

    Raises
    ------
    BackendError
        A negative box or lasso (SAM2 takes boxes around the object only), or a box drawn
        across another axis than ``axis``.
    """
    rows, columns = frame_axes(axis)
    out: dict[int, FramePrompt] = {}

    def frame_of(value: float) -> int:
        return int(np.clip(np.rint(value), 0, n_frames - 1))

    for prompt in prompts:
        ijk = np.asarray(prompt.ijk, dtype=np.float64)
        if prompt.kind in ("box", "lasso"):
            if not prompt.positive:
                raise BackendError(
                    f"SAM2 takes a {prompt.kind} around the object only, not a negative one; "
                    "use negative points to take parts away."
                )
            if prompt.slice_axis is not None and prompt.slice_axis != axis:
                raise BackendError(
                    f"SAM2 follows one stack of slices, here along voxel axis {axis} (where "
                    f"the first box was drawn); this {prompt.kind} is drawn across axis "
                    f"{prompt.slice_axis}. Draw boxes on the same view, or use points."
                )
            low, high = ijk.min(axis=0), ijk.max(axis=0)
            frame = out.setdefault(frame_of(ijk[:, axis].mean()), FramePrompt())
            frame.box = (low[columns], low[rows], high[columns], high[rows])
            continue
        by_frame: dict[int, list] = {}  # a point's one vertex, or a scribble's voxels
        for vertex in ijk:
            by_frame.setdefault(frame_of(vertex[axis]), []).append(vertex)
        for index, vertices in by_frame.items():
            if len(vertices) > SCRIBBLE_POINTS:  # evenly along the stroke
                chosen = np.linspace(0, len(vertices) - 1, SCRIBBLE_POINTS).round().astype(int)
                vertices = [vertices[n] for n in chosen]
            frame = out.setdefault(index, FramePrompt())
            for vertex in vertices:
                frame.points.append((vertex[columns], vertex[rows]))
                frame.labels.append(int(prompt.positive))
    return out


# ----------------------------------------------------------------------- the backend
def _fingerprint(image: np.ndarray) -> int:
    """A cheap identity of a scan's voxels (with its shape), for the per-scan cache."""
    step = max(1, int(np.ceil((image.size / 200_000) ** (1 / 3))))
    sample = np.ascontiguousarray(image[::step, ::step, ::step])
    return zlib.crc32(sample.tobytes()) ^ hash(image.shape)


class Sam2Backend(PromptBackend):
    """SAM2's video predictor on the slices of a scan (see the module docstring).

    Parameters
    ----------
    checkpoint : Path
        The SAM2 checkpoint file (``.pt``).
    config : str or None
        The package config to build (``"sam2.1_hiera_t"``...); None: read from the weights.
    image_size : int or None
        The model's input size in pixels (a multiple of 32); None: the config's (1024).
    window : None, str or (float, float)
        How slices become 0..255 frames (:func:`window_limits`); None: automatic.
    slice_axis : int or None
        The voxel axis of the frames when the prompts are points only; None: the scan's
        axial axis.
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    feature_cache_mb : float
        Most memory (on the device) for the frames' image features kept between clicks.

    Raises
    ------
    BackendError
        The checkpoint is missing, not a PyTorch checkpoint, would run code when loaded,
        is not SAM2 or does not fit ``config``; the ``sam2`` package is missing; a bad
        option. Each names the file or option and the fix.
    """

    name = "sam2"
    title = "SAM2 (your checkpoint)"
    licence = "Apache-2.0"
    crops = False
    needs_checkpoint = True

    def __init__(
        self,
        checkpoint: Path,
        config: str | None = None,
        image_size: int | None = None,
        window=None,
        slice_axis: int | None = None,
        device: str = "auto",
        feature_cache_mb: float = 2048.0,
    ) -> None:
        self.checkpoint = Path(checkpoint)
        if image_size is not None:
            try:
                size = int(image_size)
            except (TypeError, ValueError):
                size = 0
            if size <= 0 or size % 32:
                raise BackendError(
                    f"SAM2 image_size must be a positive multiple of 32, got {image_size!r}."
                )
            image_size = size
        if slice_axis is not None and slice_axis not in (0, 1, 2):
            raise BackendError(f"slice_axis must be 0, 1 or 2, got {slice_axis!r}.")
        if window is not None:
            window_limits(np.zeros(1, dtype=np.float32), window)  # checks it now
        self.window = window
        self.slice_axis = slice_axis
        self.feature_cache_mb = float(feature_cache_mb)
        state = read_checkpoint(self.checkpoint)
        version, size = identify_checkpoint(state, self.checkpoint)
        found = CONFIGS[(version, size)]
        if config is None:
            self.config = found
        else:
            self.config = config_for(config)
            if self.config != found:
                raise _error(
                    self.checkpoint,
                    f"is a {_describe(version, size)} checkpoint, but config "
                    f"{Path(self.config).stem} ({_describe(*self._config_key())}) was asked for.",
                    f"Leave config out (it is read from the weights) or pass "
                    f"config='{Path(found).stem}'.",
                )
        self.model_name = _describe(version, size)
        self._predictor = self._build(state, image_size, device)
        self._lock = threading.Lock()
        self._state: _State | None = None
        self._state_key = None

    def _config_key(self) -> tuple[str, str]:
        return next(key for key, value in CONFIGS.items() if value == self.config)

    def _build(self, state: dict, image_size: int | None, device: str):
        try:
            import sam2  # noqa: F401
            from sam2.build_sam import build_sam2_video_predictor
        except ImportError as error:
            raise BackendError(
                f"the SAM2 method needs the sam2 package ({error}). {INSTALL_HINT}"
            ) from None
        except RuntimeError as error:  # sam2's own check of a shadowing sam2 folder
            raise BackendError(f"the sam2 package cannot be imported: {error}") from None
        from napari_medseg.inference.devices import resolve_device

        try:
            self.device = resolve_device(device)
        except MedsegError as error:
            raise BackendError(str(error)) from None
        overrides = [] if image_size is None else [f"++model.image_size={int(image_size)}"]
        predictor = build_sam2_video_predictor(
            self.config, ckpt_path=None, device=self.device, hydra_overrides_extra=overrides
        )
        _check_weights_fit(predictor, state, self.checkpoint, self.config)
        predictor.load_state_dict(state, strict=True)
        predictor.eval()
        logger.info(
            "SAM2 %s from %s on %s (input %d px)",
            self.model_name, self.checkpoint, self.device, predictor.image_size,
        )
        return predictor

    # -- per scan ------------------------------------------------------------------------
    def _scan_state(self, request: PromptRequest, axis: int) -> _State:
        """SAM2's state for this scan and axis: reused while the scan stays the same."""
        image = request.image
        key = (request.scan_key, axis, image.shape, _fingerprint(image))
        if self._state is not None and self._state_key == key:
            return self._state
        self._state = self._state_key = None
        limits = window_limits(image, self.window)
        frames = _Frames(
            to_frames(image, axis, limits), self._predictor.image_size,
            *_loader_normalisation(), self.device,
        )
        raise_if_cancelled(request.cancel, "interactive segmentation cancelled")
        with _frames_from_memory():
            state = self._predictor.init_state(frames)
        self._state = _State(state, self.feature_cache_mb * 2**20)
        self._state_key = key
        logger.info(
            "SAM2 frames: %d slices along axis %d, window %.1f..%.1f", len(frames), axis, *limits
        )
        return self._state

    def segment(self, request: PromptRequest) -> np.ndarray:
        image = request.image
        mask = np.zeros(image.shape, dtype=bool)
        prompts: tuple[VoxelPrompt, ...] = request.prompts
        if not any(p.positive for p in prompts):
            return mask  # nothing to look for: SAM2 needs the object shown once
        axis = frame_axis(prompts, request.spacing_mm, self.slice_axis, request.affine)
        inputs = frame_prompts(prompts, axis, image.shape[axis])
        with self._lock:
            state = self._scan_state(request, axis)
            predictor = self._predictor
            predictor.reset_state(state)
            for frame, given in inputs.items():
                raise_if_cancelled(request.cancel, "interactive segmentation cancelled")
                predictor.add_new_points_or_box(
                    state,
                    frame_idx=frame,
                    obj_id=OBJECT_ID,
                    points=np.asarray(given.points, dtype=np.float32).reshape(-1, 2),
                    labels=np.asarray(given.labels, dtype=np.int32),
                    box=None if given.box is None else np.asarray(given.box, dtype=np.float32),
                )
            frames = np.moveaxis(mask, axis, 0)  # a view: writing frames writes the mask
            for reverse in (False, True):
                for index, _ids, logits in predictor.propagate_in_video(state, reverse=reverse):
                    raise_if_cancelled(request.cancel, "interactive segmentation cancelled")
                    frames[index] = (logits[0, 0] > 0.0).cpu().numpy()
        return mask

    def reset(self) -> None:
        """Drop SAM2's prompts and tracking; the frames and their features stay (they
        depend on the scan alone)."""
        with self._lock:
            if self._state is not None:
                self._predictor.reset_state(self._state)

    def close(self) -> None:
        """Free the model, the frames and the features."""
        with self._lock:
            self._state = self._state_key = None
            self._predictor = None
        from napari_medseg.inference.devices import free_cached_memory

        if getattr(self, "device", None) is not None:
            free_cached_memory(self.device)


__all__ = [
    "CONFIGS",
    "Sam2Backend",
    "config_for",
    "frame_axis",
    "frame_prompts",
    "identify_checkpoint",
    "read_checkpoint",
    "to_frames",
    "window_limits",
]
