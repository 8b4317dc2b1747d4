"""Segment scans with a loaded model: load once, predict many.

A :class:`Segmenter` holds one network on one device. :meth:`Segmenter.predict`
takes the input channels on the scan's grid and returns a :class:`SegmentationResult`
whose labels lie on that same grid, with the same affine:

1. the model's ``preprocess`` puts the channels on the model grid (reorient,
   resample, intensity transform). NaN and +/-inf voxels are counted first; the
   model sees them as the channel's lowest finite value (replaced in the
   preprocessing's own float copy, see :mod:`napari_medseg.models.preprocess`; a
   preprocessing that keeps them, such as a MONAI bundle's transforms, is run again on
   copies with them replaced), and the result's ``warnings`` give their count. The
   scan is never changed;
2. a sliding window (:mod:`napari_medseg.inference.sliding_window`: MONAI's window placement and
   gaussian blending) runs the network; the volume is cut into blocks at the window
   edges and every block is finalised as soon as its last window is done: divided by
   its blending weight and turned into labels (argmax for ``softmax`` models;
   ``sigmoid >= 0.5`` (or the bundle's threshold) painted in ``paint_order`` for
   ``sigmoid`` models), then freed.
   The float accumulator only holds the blocks under windows still to come (about the
   overlap slab behind the current row of windows plus that row), and the label map on
   the model grid is uint8 (uint16 above 255 classes);
3. ``postprocess_labels`` runs on the model grid, then the labels go back to the scan's
   grid by nearest neighbour (:func:`napari_medseg.resample.resample_labels`).

   A model whose ``details["interpolate"]`` is set (a MONAI bundle whose postprocessing
   is ``Activationsd -> Invertd(nearest_interp=False) -> AsDiscreted``, e.g.
   spleen_ct_segmentation) decides its labels on the scan's grid instead, as the bundle
   does: the argmax (or threshold) of its scores interpolated trilinearly onto that
   grid (``values``: softmax or sigmoid probabilities, or logits; ``padding_mode``:
   border or zeros), then ``postprocess_labels`` runs there.
   :mod:`napari_medseg.inference.label_resample` gives that result while interpolating
   only the scan voxels within one model voxel of a label boundary; the scores are kept
   as ``K`` float32 volumes of the *model* grid for it, never on the scan's grid.

Float probabilities are only kept when asked (``return_probabilities=True``): then
the full ``(K, X, Y, Z)`` float32 map is kept on the model grid, and each channel is
interpolated linearly onto the scan's grid, costing ``K`` float volumes of the scan's
size.

3D models run their windows with the model grid's longest axis as the outer loop and
its shortest as the inner one (the fewest voxels waiting for windows to come). 2D
models run slice by slice along ``spec.slice_axis``: each slice is a sliding-window
pass of its own (windows of several slices share a network call, ``sw_batch_size`` at
a time), identical to running MONAI's 2D ``sliding_window_inference`` on every slice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.errors import FileError, MedsegError
from napari_medseg.inference.label_resample import (
    argmax_of_interpolated,
    threshold_of_interpolated,
)
from napari_medseg.io.nifti import label_dtype_for_range
from napari_medseg.io.nonfinite import count_nonfinite, replace_nonfinite
from napari_medseg.labels.classes import LabelClass
from napari_medseg.models.loaded import LoadedModel
from napari_medseg.progress import Progress, raise_if_cancelled
from napari_medseg.resample import resample_labels, same_grid
from napari_medseg.volume import Volume

logger = logging.getLogger(__name__)


class InputChannelsError(FileError):
    """The input channels do not fit the model (count, not on one voxel grid, or a
    channel without a single finite voxel)."""


class InferenceMemoryError(MedsegError):
    """The device ran out of memory even with CPU stitching and one window per call."""


class ModelRunError(FileError):
    """The network does not run on the windows its spec describes.

    For example a spec whose ``in_channels`` differs from the network's, or a window
    (``roi_size``) a U-Net cannot take, or an output whose size is not the window's.
    The message names the model (its spec file, bundle folder or name).
    """


@dataclass
class SegmentationResult:
    """Labels of one scan, on the scan's own voxel grid.

    Attributes
    ----------
    labels : numpy.ndarray
        Shape ``(I, J, K)`` of the source volume (the first input channel), uint8
        (uint16 when a label value exceeds 255); 0 is background.
    affine : numpy.ndarray
        4x4 voxel -> RAS mm matrix, a copy of the source volume's affine.
    label_classes : tuple of LabelClass
        Value, name and colour of every class the model outputs.
    probabilities : numpy.ndarray or None
        float32 ``(C, I, J, K)`` class probabilities (softmax, or per-channel sigmoid)
        interpolated linearly onto the source grid; only with ``return_probabilities``.
    model_name : str
        Catalogue name of the model.
    settings : dict
        Device, AMP, sliding-window and TTA settings, model grid and model source (for
        the provenance of reports).
    timings_s : dict
        Seconds spent in ``preprocess``, ``network`` (sliding window and stitching),
        ``postprocess`` (label clean-up and resampling) and ``total``.
    warnings : list of str
        What the user should know (e.g. a fallback to CPU stitching).
    """

    labels: np.ndarray
    affine: np.ndarray
    label_classes: tuple[LabelClass, ...]
    probabilities: np.ndarray | None
    model_name: str
    settings: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def provenance(self) -> dict[str, Any]:
        """``{"name", "settings"}`` of the model run: what sidecars, layer metadata
        (``metadata["medseg"]["model"]``) and reports record about it."""
        return {"name": self.model_name, "settings": dict(self.settings)}


class _Ticker:
    """Reports ``progress(done, total)``: monotonic, ending exactly at ``total``.

    After a retry (an out-of-memory fallback restarts the windows, maybe with another
    number of calls) the count is rescaled and held until it passes what was shown.
    """

    def __init__(self, callback: Progress | None, total: int) -> None:
        self.callback = callback
        self.total = total
        self.raw_total = total
        self.raw_done = 0
        self.shown = 0
        if callback is not None:
            callback(0, total)

    def restart(self, raw_total: int) -> None:
        self.raw_total = max(raw_total, 1)
        self.raw_done = 0

    def step(self) -> None:
        self.raw_done += 1
        value = min(self.total, self.total * self.raw_done // self.raw_total)
        if value > self.shown:
            self.shown = value
            if self.callback is not None:
                self.callback(value, self.total)

    def finish(self) -> None:
        if self.shown < self.total:
            self.shown = self.total
            if self.callback is not None:
                self.callback(self.total, self.total)


def _first_tensor(output):
    """The segmentation output of a network: a tensor, or the first of a tuple/list.

    None when it is neither (the caller says what was expected).
    """
    import torch

    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, list | tuple) and output and isinstance(output[0], torch.Tensor):
        return output[0]  # deep supervision heads: the first is the full-resolution one
    return None


def _is_torchscript(network) -> bool:
    """Whether ``network`` is a TorchScript module (whose layout is left alone)."""
    import torch

    return isinstance(network, torch.jit.ScriptModule)


def finite_copies(volumes: Sequence[Volume], nonfinite: Sequence[int]) -> list[Volume]:
    """The channels with their NaN/inf voxels replaced by the channel's lowest finite
    value, in copies (channels without any are passed as they are)."""
    out = []
    for volume, count in zip(volumes, nonfinite, strict=True):
        if count:
            array = volume.array.copy()
            replace_nonfinite(array)
            volume = Volume(array, volume.affine, volume.metadata)
        out.append(volume)
    return out


def resample_probabilities(
    probabilities: np.ndarray,
    affine: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
) -> np.ndarray:
    """Interpolate ``(K, X, Y, Z)`` probabilities linearly onto another voxel grid.

    Each target voxel centre is mapped into the source grid through the affines and
    the value is trilinearly interpolated; centres beyond the source grid's edge take
    the nearest edge value (the model grid covers the scan's field of view, so this is
    at most half a voxel).

    Returns
    -------
    numpy.ndarray
        float32, shape ``(K, *target_shape)``.
    """
    from scipy import ndimage

    from napari_medseg.resample import grid_transform

    transform = grid_transform(affine, target_affine)
    out = np.empty((probabilities.shape[0], *target_shape), dtype=np.float32)
    for channel in range(probabilities.shape[0]):
        ndimage.affine_transform(
            probabilities[channel],
            transform[:3, :3],
            offset=transform[:3, 3],
            output_shape=tuple(target_shape),
            output=out[channel],
            order=1,
            mode="nearest",
        )
    return out


class Segmenter:
    """Run one model on many scans.

    Parameters
    ----------
    model : LoadedModel, str or Path
        A loaded model, or what :func:`napari_medseg.models.registry.load_model`
        accepts: a catalogue name, a MONAI bundle folder, a spec JSON file or a
        TorchScript file with a sidecar JSON spec.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
        ``"mps"``.
    amp : bool
        Mixed precision: float16 autocast on CUDA, bfloat16 on a CPU that computes it
        natively, unless the model keeps float32
        (:func:`~napari_medseg.inference.devices.choose_precision`; the choice and its
        reason are :attr:`precision`).
    overlap : float, optional
        Sliding-window overlap in [0, 1); None takes the model's.
    sw_batch_size : int, optional
        Windows (2D: slices or in-slice windows) per network call; None takes the model's.
    tta : bool
        Test-time augmentation: every window also runs flipped along each spatial axis
        of the model grid, one axis at a time (3D: identity + 3 flips; 2D: identity + 2
        in-plane flips); the softmax/sigmoid probabilities of the passes are averaged
        before blending. Costs one network call per pass.
    trust_bundle : bool
        Allow a bundle folder outside the catalogue (its configs run Python code).

    Raises
    ------
    DeviceError
        The device is not available.
    ModelLoadError, ModelSpecError
        The model cannot be loaded.
    """

    def __init__(
        self,
        model: LoadedModel | str | Path,
        device: str = "auto",
        amp: bool = True,
        overlap: float | None = None,
        sw_batch_size: int | None = None,
        tta: bool = False,
        trust_bundle: bool = False,
    ) -> None:
        from napari_medseg.inference.devices import (
            choose_precision,
            network_memory_format,
            resolve_device,
        )

        self.device = resolve_device(device)
        if not isinstance(model, LoadedModel):
            from napari_medseg.models.registry import load_model

            model = load_model(model, trust_bundle=trust_bundle)
        self.model = model
        spec = model.spec
        self.overlap = spec.overlap if overlap is None else float(overlap)
        if not 0.0 <= self.overlap < 1.0:
            raise MedsegError(f"overlap must be in [0, 1), got {overlap}")
        self.sw_batch_size = spec.sw_batch_size if sw_batch_size is None else int(sw_batch_size)
        if self.sw_batch_size < 1:
            raise MedsegError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
        self.precision = choose_precision(
            self.device,
            amp,
            model_allows_cpu_bf16=spec.cpu_bf16,
            model_name=spec.name,
            own_pipeline=model.runner is not None,
        )
        self.amp = self.precision.mixed
        self.tta = bool(tta)
        self.network = model.network.to(self.device).eval()
        self.memory_format = network_memory_format(self.device, spec.spatial_dims)
        if self.memory_format is not None and not _is_torchscript(self.network):
            self.network = self.network.to(memory_format=self.memory_format)
        else:  # TorchScript modules keep their layout; so do their inputs
            self.memory_format = None

    @property
    def spec(self):
        """The model's :class:`~napari_medseg.models.spec.ModelSpec`."""
        return self.model.spec

    @property
    def label_classes(self) -> tuple[LabelClass, ...]:
        """The classes the model outputs."""
        return tuple(self.model.spec.labels)

    # -- public ------------------------------------------------------------------------
    def predict(
        self,
        channels: Volume | Sequence[Volume],
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        return_probabilities: bool = False,
    ) -> SegmentationResult:
        """Segment one scan.

        Parameters
        ----------
        channels : Volume or sequence of Volume
            The scan (one volume per input channel, all on one grid, in the model's
            channel order). The first channel's grid is the output grid.
        progress : callable, optional
            ``progress(done, total)``: called with ``(0, total)`` first, then after
            every network call; ``total`` = window batches x TTA passes, known up
            front; ``done`` never decreases and ends at ``total``.
        cancel : threading.Event, optional
            Checked before every network call; when set, :class:`Cancelled`
            is raised (within one window batch).
        return_probabilities : bool
            Also return float32 probabilities on the source grid (costs ``K`` float
            volumes on the model grid and on the source grid).

        Raises
        ------
        InputChannelsError
            Wrong number of channels, channels on different grids, or a channel whose
            voxels are all NaN or infinite.
        Cancelled
            ``cancel`` was set.
        ModelRunError
            The network does not run on the windows its spec describes (channels,
            window size), or returns an output of another size.
        InferenceMemoryError
            The device ran out of memory even with CPU stitching and one window per call.
        """
        import torch

        started = time.perf_counter()
        volumes = [channels] if isinstance(channels, Volume) else list(channels)
        if not volumes:
            raise InputChannelsError("input", "no input volume given.")
        source = volumes[0]
        nonfinite = [count_nonfinite(volume.array) for volume in volumes]
        for volume, count in zip(volumes, nonfinite, strict=True):
            if count and count == volume.array.size:  # read_scan refuses these files
                raise InputChannelsError(
                    volume.metadata.source or "input",
                    f"all {count} voxels are NaN or infinite: there is nothing to segment.",
                    "Segment a scan with image values.",
                )
        if self.model.runner is not None:  # a model with its own pipeline (nnU-Net)
            return self._predict_with_runner(
                volumes, nonfinite, progress, cancel, return_probabilities, started
            )
        try:
            prepared = self.model.preprocess(volumes)
            if any(nonfinite) and count_nonfinite(prepared.image.detach().cpu().numpy()):
                # this preprocessing kept them (a bundle's own transforms): hand it copies
                del prepared
                prepared = self.model.preprocess(finite_copies(volumes, nonfinite))
        except ValueError as error:
            raise InputChannelsError(
                source.metadata.source or "input", f"{error}.", self._channels_hint()
            ) from None
        image, model_affine = prepared.image, np.asarray(prepared.affine, dtype=float)
        del prepared
        preprocessed = time.perf_counter()
        warnings = self._run_warnings(volumes, nonfinite)
        spec = self.model.spec
        on_source_grid = same_grid(
            tuple(image.shape[1:]), model_affine, source.shape, source.affine
        )
        interpolate = None if on_source_grid else self.model.details.get("interpolate")
        keep = [spec.activation] if return_probabilities else []
        if interpolate and interpolate["values"] not in keep:
            keep.append(interpolate["values"])
        with torch.inference_mode():
            labels, kept, run = self._run_with_fallback(image, progress, cancel, keep, warnings)
        del image
        networked = time.perf_counter()
        if interpolate:
            labels = self._decide_on_scan_grid(
                kept[interpolate["values"]], interpolate, labels, model_affine, source
            )
            if not return_probabilities or interpolate["values"] != spec.activation:
                del kept[interpolate["values"]]  # the scores are done with
        if self.model.postprocess_labels is not None:  # on the grid the labels are decided
            labels = np.asarray(self.model.postprocess_labels(labels)).astype(
                labels.dtype, copy=False
            )
        if not on_source_grid and not interpolate:
            labels = resample_labels(labels, model_affine, source.shape, source.affine)
        probabilities = kept.pop(spec.activation, None) if return_probabilities else None
        del kept
        if probabilities is not None and not on_source_grid:
            probabilities = resample_probabilities(
                probabilities, model_affine, source.shape, source.affine
            )
        finished = time.perf_counter()
        settings = {
            **self._run_settings(),
            "blend_mode": spec.blend_mode,
            "sigma_scale": spec.sigma_scale,
            "activation": spec.activation,
            "spatial_dims": spec.spatial_dims,
            "tta": self.tta,
            "labels_decided_on": "scan grid, from interpolated "
            f"{interpolate['values']} ({interpolate['padding_mode']} padding)"
            if interpolate
            else "model grid",
            "model_grid_shape": list(run["model_shape"]),
            "model_grid_spacing_mm": [
                round(float(s), 6) for s in np.sqrt((model_affine[:3, :3] ** 2).sum(axis=0))
            ],
            "source_shape": list(source.shape),
            "torch": torch.__version__,
            **run["settings"],
        }
        timings = {
            "preprocess": preprocessed - started,
            "network": networked - preprocessed,
            "postprocess": finished - networked,
            "total": finished - started,
        }
        return SegmentationResult(
            labels=np.ascontiguousarray(labels),
            affine=np.array(source.affine, dtype=float, copy=True),
            label_classes=self.label_classes,
            probabilities=probabilities,
            model_name=spec.name,
            settings=settings,
            timings_s={k: round(v, 4) for k, v in timings.items()},
            warnings=warnings,
        )

    def _predict_with_runner(
        self, volumes, nonfinite, progress, cancel, return_probabilities, started
    ) -> SegmentationResult:
        """:meth:`predict` for a model that runs its own pipeline (``model.runner``): it
        gets the channels (NaN/inf replaced in copies) and returns labels on their grid."""
        import torch

        from napari_medseg.models.loaded import RunRequest

        source = volumes[0]
        request = RunRequest(
            device=self.device,
            amp=self.amp,
            tta=self.tta,
            overlap=self.overlap,
            sw_batch_size=self.sw_batch_size,
            progress=progress,
            cancel=cancel,
            return_probabilities=return_probabilities,
        )
        try:
            with torch.inference_mode():
                out = self.model.runner(self.network, finite_copies(volumes, nonfinite), request)
        except ValueError as error:
            raise InputChannelsError(
                source.metadata.source or "input", f"{error}.", self._channels_hint()
            ) from None
        if out.labels.shape != source.shape:
            raise self._run_error(
                f"its pipeline returned labels of shape {out.labels.shape} for a scan of "
                f"shape {source.shape}."
            )
        warnings = self._run_warnings(volumes, nonfinite)
        warnings += [w for w in out.warnings if w not in warnings]
        spec = self.model.spec
        settings = {
            **self._run_settings(),
            "activation": spec.activation,
            "spatial_dims": spec.spatial_dims,
            "tta": self.tta,
            "model_grid_shape": list(out.model_shape),
            "source_shape": list(source.shape),
            "torch": torch.__version__,
            **out.settings,
        }
        timings = {**out.timings_s, "total": time.perf_counter() - started}
        probabilities = out.probabilities
        if probabilities is not None:
            probabilities = probabilities.astype(np.float32, copy=False)
        return SegmentationResult(
            labels=np.ascontiguousarray(out.labels),
            affine=np.array(source.affine, dtype=float, copy=True),
            label_classes=self.label_classes,
            probabilities=probabilities,
            model_name=spec.name,
            settings=settings,
            timings_s={k: round(float(v), 4) for k, v in timings.items()},
            warnings=warnings,
        )

    # -- internals -----------------------------------------------------------------------
    def _run_warnings(self, volumes: Sequence[Volume], nonfinite: Sequence[int]) -> list[str]:
        """What every run tells the user: the model's own warnings, its licence and domain
        (:meth:`advance_warnings`, about the first channel) and the NaN/inf voxels seen."""
        warnings: list[str] = [str(w) for w in self.model.details.get("warnings", ())]
        warnings += self.advance_warnings(volumes[0])
        warnings += [
            f"{volume.metadata.source or 'the scan'}: the model saw its {count} NaN or "
            f"infinite voxel{'' if count == 1 else 's'} as the scan's lowest finite value "
            "(background, which cannot create structure); check the labels near them."
            for volume, count in zip(volumes, nonfinite, strict=True)
            if count
        ]
        return warnings

    def _run_settings(self) -> dict[str, Any]:
        """The settings every run records first: model, its source and licence, device,
        AMP and the sliding-window settings asked for."""
        spec = self.model.spec
        return {
            "model": spec.name,
            "model_source": self.model.source,
            "model_details": dict(self.model.details),
            **self.licence(),
            "device": str(self.device),
            "amp": self.amp,
            "precision": self.precision.dtype,
            "precision_reason": self.precision.reason,
            "overlap": self.overlap,
            "sw_batch_size": self.sw_batch_size,
            "roi_size": list(spec.roi_size),
        }

    def _channels_hint(self) -> str:
        spec = self.model.spec
        names = f" ({', '.join(spec.channel_names)})" if spec.channel_names else ""
        return (
            f"Give {spec.in_channels} input scan(s){names}, in this order, all on one voxel grid."
        )

    def _run_error(self, problem: str) -> ModelRunError:
        """A :class:`ModelRunError` naming the model and what to check in its spec."""
        return ModelRunError(
            self.model.source or self.model.spec.name,
            problem,
            "Check that the spec's in_channels, spatial_dims and roi_size fit the network "
            "(e.g. a U-Net needs a window divisible by the product of its strides).",
        )

    def _call_network(self, x):
        """One network call: ``(B, C, *window)`` -> ``(B, K, *window)`` logits, float32.

        Raises
        ------
        ModelRunError
            The network fails on the window, or returns another batch or window size.
        """
        import torch

        from napari_medseg.inference.devices import autocast

        try:
            with autocast(self.device, self.precision.dtype):
                output = self.network(x)
        except torch.cuda.OutOfMemoryError:
            raise  # handled by the fallback
        except RuntimeError as error:
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            lines = lines or [type(error).__name__]
            # TorchScript puts its interpreter traceback first and the reason last
            detail = (lines[-1] if "TorchScript interpreter" in lines[0] else lines[0])[:200]
            if "out of memory" in detail.lower():  # e.g. MPS, which has no OutOfMemoryError
                raise InferenceMemoryError(
                    f"{self.device} ran out of memory ({detail}). Use --device cpu, or a "
                    "smaller --sw-batch-size."
                ) from error
            raise self._run_error(
                f"the network fails on a batch of windows of shape {tuple(x.shape)}: {detail}."
            ) from error
        y = _first_tensor(output)
        if y is None:
            raise self._run_error(
                f"the network returned a {type(output).__name__}; a tensor (B, K, *window) "
                "(or a tuple whose first item is one) is expected."
            )
        if y.ndim != x.ndim or y.shape[0] != x.shape[0] or y.shape[2:] != x.shape[2:]:
            raise self._run_error(
                f"the network returned shape {tuple(y.shape)} for windows of shape "
                f"{tuple(x.shape)}; its output must be (B, K, *window), the window's size."
            )
        return y.float()

    def _layout(self, shape: tuple[int, int, int]):
        """Axis order of the window loops (inner to outer), window size and overlap in that
        order, and the TTA flips."""
        spec = self.model.spec
        if spec.spatial_dims == 2:
            band_axis = spec.slice_axis
            in_plane = [a for a in range(3) if a != band_axis]
            perm = (*in_plane, band_axis)
            roi = (*(r or shape[a] for r, a in zip(spec.roi_size, in_plane, strict=True)), 1)
            overlap = (self.overlap, self.overlap, 0.0)
            flips = [(2,), (3,)]  # in-plane axes of a (B, C, H, W) window
        else:
            # windows run along the longest axis (outer loop) and the shortest (inner):
            # the fewest voxels under windows still to come (see sliding_window)
            perm = tuple(sorted(range(3), key=lambda a: (shape[a], a)))
            roi = tuple(spec.roi_size[a] or shape[a] for a in perm)  # 0: the whole axis
            overlap = (self.overlap,) * 3
            flips = [(2,), (3,), (4,)]
        passes = [()] + (flips if self.tta else [])
        return perm, roi, overlap, passes

    def licence(self) -> dict[str, str]:
        """``license``, ``license_file``, ``intended_use`` and ``source`` of the model's
        weights (``"unknown"`` licence when the model states none); a model folder's
        (MONAI bundle, nnU-Net) from the ``LICENSE`` file in it."""
        from napari_medseg.models.licence import UNKNOWN, licence_of_folder

        details = self.model.details
        if details.get("license"):
            keys = ("license", "license_file", "intended_use", "source")
            return {key: str(details.get(key, "") or "") for key in keys}
        licence, licence_file = UNKNOWN, ""
        if details.get("folder"):  # a MONAI bundle or an nnU-Net folder
            licence, licence_file = licence_of_folder(Path(str(details["folder"])))
        return {
            "license": licence,
            "license_file": licence_file,
            "intended_use": self.model.spec.description or "",
            "source": self.model.source,
        }

    def advance_warnings(self, scan: Volume) -> list[str]:
        """What to tell the user before the model runs on ``scan``: weights whose
        licence rules out commercial use, and a scan outside the model's domain."""
        from napari_medseg.models.licence import licence_warning

        told = licence_warning(self.model.spec.name, self.licence()["license"])
        return ([told] if told else []) + self.domain_warnings(scan)

    def domain_warnings(self, scan: Volume) -> list[str]:
        """How ``scan`` lies outside the scans the model was made for (its spec's
        modality and :class:`~napari_medseg.models.domain.ModelDomain`); empty when
        it does not, or the model states no domain."""
        from napari_medseg.models.domain import domain_warnings

        spec = self.model.spec
        return domain_warnings(spec.domain, spec.modality, scan, model=spec.name)

    def _run_with_fallback(self, image, progress, cancel, keep, warnings):
        """Sliding window with retries when the device runs out of memory."""
        import torch

        from napari_medseg.inference.devices import free_cached_memory
        from napari_medseg.inference.sliding_window import plan_windows

        perm, roi, overlap, passes = self._layout(tuple(image.shape[1:]))
        band_shape = tuple(int(image.shape[1 + a]) for a in perm)
        stitch_device = self.device
        batch_size = self.sw_batch_size
        plan = plan_windows(band_shape, roi, overlap, batch_size)
        ticker = _Ticker(progress, plan.n_batches * len(passes))
        while True:
            try:
                labels, kept = self._run(
                    image, perm, plan, passes, stitch_device, ticker, cancel, keep
                )
                break
            except torch.cuda.OutOfMemoryError:
                pass  # retried below, once the traceback (and the failed pass's tensors) is gone
            free_cached_memory(self.device)
            if stitch_device.type != "cpu":
                stitch_device = torch.device("cpu")
                warnings.append(
                    f"{self.device} ran out of memory; the windows were stitched on the CPU "
                    "instead (slower, same result)."
                )
            elif plan.batch_size > 1:
                plan = plan_windows(band_shape, roi, overlap, 1)
                warnings.append(
                    f"{self.device} ran out of memory with {batch_size} windows per call; "
                    "ran one window per call instead (slower, same result)."
                )
            else:
                raise InferenceMemoryError(
                    f"{self.device} ran out of memory even with one window per call and "
                    "CPU stitching. Use --device cpu, or a model with a smaller window."
                )
            logger.warning(warnings[-1])
            ticker.restart(plan.n_batches * len(passes))
        ticker.finish()
        run = {
            "model_shape": tuple(int(n) for n in image.shape[1:]),
            "settings": {
                "stitch_device": str(stitch_device),
                "sw_batch_size_used": plan.batch_size,
                "band_axis": perm[2],
                "n_windows": plan.n_windows,
                "n_network_calls": plan.n_batches * len(passes),
                "tta_flips": [self._flip_name(p, perm) for p in passes],
            },
        }
        if self.model.spec.spatial_dims == 2:
            run["settings"]["slice_axis"] = self.model.spec.slice_axis
        return labels, kept, run

    def _flip_name(self, flip: tuple[int, ...], perm: tuple[int, ...]) -> str:
        """What a TTA pass flips, in model-grid axes (2D windows hold the in-plane axes)."""
        if not flip:
            return "identity"
        axis = perm[flip[0] - 2] if self.model.spec.spatial_dims == 2 else flip[0] - 2
        return f"flip model-grid axis {axis}"

    def _predictor(self, perm, passes, ticker, cancel, stitch_device):
        """``(B, C, *window in band order) -> (B, K, *window)`` on ``stitch_device``."""
        import torch

        spec = self.model.spec
        inverse = [perm.index(a) for a in range(3)]  # band position of each model axis
        two_d = spec.spatial_dims == 2
        sigmoid = spec.activation == "sigmoid"

        def predict(windows):
            x = windows.to(self.device, non_blocking=True)
            x = x[..., 0] if two_d else x.permute(0, 1, *(2 + i for i in inverse))
            if self.memory_format is None:
                x = x.contiguous()
            else:
                x = x.contiguous(memory_format=self.memory_format)
            total = None
            for flip in passes:
                raise_if_cancelled(cancel, "segmentation cancelled")
                y = self._call_network(x.flip(flip) if flip else x)
                if flip:
                    y = y.flip(flip)
                if len(passes) > 1:
                    y = torch.sigmoid(y) if sigmoid else torch.softmax(y, dim=1)
                    total = y if total is None else total.add_(y)
                ticker.step()
            if len(passes) > 1:
                y = total.div_(len(passes))
            y = y[..., None] if two_d else y.permute(0, 1, *(2 + a for a in perm))
            return y.to(stitch_device)

        return predict

    def _run(self, image, perm, plan, passes, stitch_device, ticker, cancel, keep=()):
        """One full sliding-window pass on the model grid.

        Returns the labels and ``{kind: (K, X, Y, Z) float32}`` for each kind in ``keep``
        (``"softmax"``, ``"sigmoid"``: probabilities; ``"logits"``).
        """
        import torch

        from napari_medseg.inference.sliding_window import importance_map, stitch_blocks

        spec = self.model.spec
        view = image.permute(0, *(1 + a for a in perm))
        weights = importance_map(plan.roi, spec.blend_mode, spec.sigma_scale)
        predict = self._predictor(perm, passes, ticker, cancel, stitch_device)
        stitched_probabilities = len(passes) > 1
        model_shape = tuple(int(n) for n in image.shape[1:])
        labels = None
        kept: dict[str, np.ndarray] = {}
        kept_views: dict[str, np.ndarray] = {}
        details = self.model.details
        padding_mode = str(details.get("padding_mode", "constant"))
        cval = float(details.get("cval", 0.0))
        blocks = stitch_blocks(view, plan, predict, weights, stitch_device, padding_mode, cval)
        labels_view = None
        for region, block in blocks:
            if labels is None:
                labels = np.zeros(model_shape, dtype=self._label_dtype(block.shape[0]))
                labels_view = np.transpose(labels, perm)  # writes land in ``labels``
                for kind in keep:
                    kept[kind] = np.zeros((block.shape[0], *model_shape), dtype=np.float32)
                    kept_views[kind] = np.transpose(kept[kind], (0, *(1 + a for a in perm)))
            if stitched_probabilities:
                probs = block
            elif spec.activation == "sigmoid":
                probs = torch.sigmoid(block)
            else:
                probs = torch.softmax(block, dim=0) if spec.activation in keep else block
            labels_view[region] = self._labels_of(probs, block.shape[0]).cpu().numpy()
            for kind, kept_view in kept_views.items():
                values = probs if kind == spec.activation or stitched_probabilities else None
                if values is None:  # TTA averages probabilities: those are what it keeps
                    values = (
                        block
                        if kind == "logits"
                        else torch.sigmoid(block)
                        if kind == "sigmoid"
                        else torch.softmax(block, dim=0)
                    )
                kept_view[(slice(None), *region)] = values.cpu().numpy()
            del block, probs
        return labels, kept

    def _decide_on_scan_grid(self, scores, interpolate, labels, model_affine, source):
        """Labels on the scan grid: argmax or painted thresholds of ``scores`` interpolated
        there (``interpolate``: ``values`` and ``padding_mode``, see the module notes)."""
        spec = self.model.spec
        padding_mode = str(interpolate["padding_mode"])
        if spec.activation == "softmax":
            return argmax_of_interpolated(
                scores,
                model_affine,
                source.shape,
                source.affine,
                padding_mode=padding_mode,
                # the model-grid labels are the argmax of exactly these kept probabilities
                labels=labels if interpolate["values"] == "softmax" else None,
            ).astype(labels.dtype, copy=False)
        threshold = float(self.model.details.get("threshold", 0.5))
        if interpolate["values"] == "logits":  # sigmoid(x) >= t  <=>  x >= logit(t)
            with np.errstate(divide="ignore"):
                threshold = float(np.log(threshold) - np.log1p(-threshold))
        out = np.zeros(source.shape, dtype=labels.dtype)
        for channel, value in self._paint_order(scores.shape[0]):
            on = threshold_of_interpolated(
                scores[channel : channel + 1],
                threshold,
                model_affine,
                source.shape,
                source.affine,
                padding_mode=padding_mode,
            )[0]
            out[on] = value
        return out

    def _paint_order(self, n_channels: int) -> list[tuple[int, int]]:
        spec = self.model.spec
        if spec.paint_order:
            beyond = [c for c, _ in spec.paint_order if not 0 <= c < n_channels]
            if beyond:
                raise self._run_error(
                    f"paint_order names output channel(s) {beyond}, but the network returns "
                    f"{n_channels} channel(s)."
                )
            return [tuple(pair) for pair in spec.paint_order]
        values = sorted(label.value for label in spec.labels if label.value != 0)
        return list(enumerate(values[:n_channels]))

    def _label_dtype(self, n_channels: int) -> np.dtype:
        if self.model.spec.activation == "sigmoid":
            return label_dtype_for_range(
                0, max([v for _, v in self._paint_order(n_channels)] or [0])
            )
        return label_dtype_for_range(0, n_channels - 1)

    def _labels_of(self, probs, n_channels: int):
        """Labels of a block: argmax (softmax), or painted ``sigmoid >= threshold`` channels.

        The threshold is 0.5 unless the model's ``details`` say otherwise (a bundle's
        ``AsDiscreted(threshold=...)``).
        """
        import torch

        dtype = torch.uint8 if self._label_dtype(n_channels) == np.uint8 else torch.int32
        if self.model.spec.activation == "softmax":
            return torch.argmax(probs, dim=0).to(dtype)
        labels = torch.zeros(probs.shape[1:], dtype=dtype, device=probs.device)
        threshold = float(self.model.details.get("threshold", 0.5))
        for channel, value in self._paint_order(n_channels):
            labels[probs[channel] >= threshold] = value
        return labels
