"""VISTA3D point prompts through a MONAI bundle folder the user gives.

VISTA3D (He et al. 2024, https://arxiv.org/abs/2406.05285) is MONAI's 3D CT foundation
model: a SegResNet encoder with a class head (127 structures by number) and a SAM-like
point head that segments the object under positive and negative clicks, also one it was
never trained on ("zero-shot"). The Model Zoo bundle ``vista3d`` holds it::

    vista3d/
      configs/inference.json   preprocessing, network_def, inferer settings
      configs/metadata.json    labels, version
      models/model.pt          the weights
      LICENSE.weights          their licence (NVIDIA License: non-commercial use only)
      scripts/                 the bundle's own evaluator and inferer

This backend runs the bundle's point-only interactive path as its own run does
(``configs/inference.json`` with points and no ``label_prompt``), from MONAI's pieces:

1. **Preprocessing**: the bundle's own ``preprocessing`` transforms, built from its
   config (:mod:`napari_medseg.models.bundle_transforms`): ``Spacingd`` to its
   ``resample_spacing`` (1.5 mm), ``CropForegroundd``, ``ScaleIntensityRanged``
   (-963.8..1053.7 HU to 0..1), ``Orientationd`` RAS... on the whole scan, once per scan
   (``crops = False``: VISTA3D's windows are 128^3 voxels of 1.5 mm, far more than a
   crop around the clicks would hold). Its ``LoadImaged`` is fed the scan in memory; a
   reader the installed MONAI lacks (the bundle names ``NibabelGPUReader``, which MONAI
   1.6 no longer has) is replaced by ``NibabelReader``, which is never used to read.
2. **Points**: each click, in the scan's voxels, is mapped to the preprocessed grid as
   the bundle's evaluator maps its ``points`` (``inv(image.affine) @ original_affine``,
   not rounded); label 1 for a positive click, 0 for a negative one.
3. **Inference**: ``monai.apps.vista3d.inferer.point_based_window_inferer`` (one window
   of the bundle's ``patch_size`` centred on each click; the bundle's
   ``use_point_window``), with ``transpose=True`` and no class (zero-shot point
   segmentation); ``sliding_window_inference`` over the whole scan instead when the
   bundle says ``use_point_window: false``. Every click so far goes in every time.
4. **Postprocessing**: ``VistaPostTransformd`` (keep the connected pieces that hold a
   positive click, threshold the logits at 0), then the mask back to the scan's grid by
   nearest neighbour, which is what the bundle's ``Invertd(nearest_interp=True)`` does
   (:func:`napari_medseg.resample.resample_labels`; voxels no window reached, NaN in the
   bundle, are outside the mask).

With ``label=N`` (a VISTA3D class number, e.g. 3 for the spleen) the clicks refine that
class instead, as the bundle's ``label_prompt`` with points: its class head and point head
together (``VistaPreTransformd`` marks clicks on its special classes). Only point prompts
are taken; a click-free mask (only negative clicks) is empty.

**Trust.** A bundle config runs Python code when it is read: the bundle loads only with
``trust=True`` (the user's explicit word), as every bundle outside the catalogue. Weights
are read with ``torch.load(weights_only=True)``.

**Licence.** The bundle's weights licence is read from ``LICENSE.weights`` (or
``metadata.json`` ``license``, or ``LICENSE``): the Model Zoo's VISTA3D weights are
under the NVIDIA License, for non-commercial (research or evaluation) use only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from napari_medseg.errors import MedsegError, shown_path
from napari_medseg.interactive.backends.base import BackendError, PromptBackend, PromptRequest
from napari_medseg.progress import raise_if_cancelled

logger = logging.getLogger(__name__)

#: Where a bundle keeps the licence of its weights (the first one found counts).
WEIGHTS_LICENCE_FILES = ("LICENSE.weights", "docs/LICENSE.weights")

#: The reader used in place of one the installed MONAI does not have (never reads).
FALLBACK_READER = "NibabelReader"


def weights_licence(folder: Path, metadata: dict) -> tuple[str, bool]:
    """``(licence, non-commercial)`` of a bundle's weights.

    ``LICENSE.weights`` first (its first line names it; its whole text decides whether it
    forbids commercial use), then ``metadata.json`` ``license``, then ``LICENSE``.
    """
    from napari_medseg.models.licence import (
        UNKNOWN,
        is_non_commercial,
        licence_from_text,
        licence_of_folder,
    )

    for name in WEIGHTS_LICENCE_FILES:
        path = folder / name
        if path.is_file():
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            licence = licence_from_text(text)
            non_commercial = is_non_commercial(text)
            if non_commercial and not is_non_commercial(licence):
                licence = f"{licence} (non-commercial use only)"
            return licence, non_commercial
    licence, _file = licence_of_folder(folder, str(metadata.get("license") or ""))
    return licence, licence != UNKNOWN and is_non_commercial(licence)


def _known_reader(name: str) -> bool:
    """Whether MONAI's ``LoadImage`` can build a reader named ``name`` here (it exists in
    the installed MONAI and its package is installed)."""
    from monai.transforms import LoadImage

    try:
        LoadImage(reader=name, image_only=True)
    except Exception:  # unknown name, missing optional package
        return False
    return True


def replace_unknown_readers(config) -> list[str]:
    """Give every ``LoadImaged`` whose ``reader`` cannot be built here ``NibabelReader``.

    The bundle's loader is fed volumes from memory, so its reader never reads; it only
    has to be buildable. Returns the config ids changed.
    """
    from napari_medseg.models.bundle_config import target_name, walk_config

    changed = []
    for path, item in walk_config(config):
        reader = item.get("reader")
        if (
            target_name(item) == "LoadImaged"
            and isinstance(reader, str)
            and not reader.startswith(("$", "@"))
            and not _known_reader(reader)
        ):
            item["reader"] = FALLBACK_READER
            changed.append(path)
    return changed


def _as_backend_error(error: MedsegError) -> BackendError:
    return BackendError(str(error))


class Vista3dBackend(PromptBackend):
    """VISTA3D's point prompts through its MONAI bundle (see the module docstring).

    Parameters
    ----------
    checkpoint : Path
        The bundle folder (holding ``configs/`` and ``models/``).
    trust : bool
        The bundle's config runs Python code when read: only True lets it load.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``...
    label : int or None
        None: zero-shot point segmentation (the clicked object). A VISTA3D class number:
        the clicks refine that class.

    Raises
    ------
    BackendError
        Not trusted, not a bundle (a missing file named), a network that is not VISTA3D,
        weights that do not fit it or would run code.
    """

    name = "vista3d"
    title = "VISTA3D (your bundle folder)"
    licence = "NVIDIA License (non-commercial use only)"
    non_commercial = True
    crops = False
    needs_checkpoint = True

    def __init__(
        self, checkpoint: Path, trust: bool = False, device: str = "auto", label: int | None = None
    ) -> None:
        from napari_medseg.models.bundle_config import (
            BundleTrustError,
            read_bundle_info,
            require_trust,
        )

        try:
            info = read_bundle_info(checkpoint)
            require_trust(info, trust)
        except BundleTrustError as error:
            raise BackendError(
                f"{shown_path(error.path)}: {error.problem} Load it only if you trust where "
                "it came from, and say so: `medseg prompt --trust-bundle`, napari's \"Trust "
                "this bundle\" tick, or make_backend('vista3d', FOLDER, trust=True)."
            ) from None
        except MedsegError as error:
            raise _as_backend_error(error) from None
        self.folder = info.folder
        self.bundle_name = f"{info.name} {info.version}".strip()
        self.licence, self.non_commercial = weights_licence(info.folder, info.metadata)
        if label is not None and (not isinstance(label, int) or label <= 0):
            raise BackendError(f"VISTA3D label {label!r} is not a class number (1, 2, 3...).")
        self.label = label
        self._load(info)
        from napari_medseg.inference.devices import resolve_device

        self.device = resolve_device(device)
        self.network = self.network.to(self.device).eval()
        self._key: tuple | None = None
        self._input = None  # ModelInput of the scan the key names

    def _load(self, info) -> None:
        from monai.apps.vista3d.transforms import VistaPreTransformd

        from napari_medseg.models import bundle_transforms
        from napari_medseg.models.bundle_config import (
            BundleError,
            bundle_imports,
            find_weights,
            load_weights,
            open_config,
            parsed,
        )

        try:
            with bundle_imports(info.folder):
                parser = open_config(info)
                changed = replace_unknown_readers(parser.config)
                if changed:
                    logger.info(
                        "VISTA3D bundle %s: reader of %s replaced by %s (never reads)",
                        info.folder,
                        ", ".join(changed),
                        FALLBACK_READER,
                    )
                self.preprocess = bundle_transforms.build_preprocess(parser, info)
                weights = find_weights(parser, info)
                if weights.kind != "state_dict":
                    raise BundleError(
                        weights.path,
                        "is a TorchScript file; VISTA3D's prompts need the network's "
                        "Python module (models/model.pt).",
                    )
                key = "network_def" if "network_def" in parser else "network"
                self.network = parsed(parser, key, "network", info)
                if not hasattr(self.network, "point_head"):
                    raise BundleError(
                        info.config_file,
                        f"'{key}' builds a {type(self.network).__name__}, not VISTA3D "
                        "(no point head): this is not a VISTA3D bundle.",
                        "Give the vista3d bundle folder (configs/, models/model.pt).",
                    )
                load_weights(self.network, weights)
                roi = parsed(parser, "inferer#roi_size", "window size", info, default=None)
                if roi is None:
                    roi = parsed(parser, "patch_size", "window size", info)
                self.roi_size = tuple(int(v) for v in roi)
                self.overlap = float(parsed(parser, "inferer#overlap", "", info, default=0.25))
                self.sw_batch_size = int(
                    parsed(parser, "inferer#sw_batch_size", "", info, default=1)
                )
                self.use_point_window = bool(
                    parsed(parser, "inferer#use_point_window", "", info, default=False)
                )
                self.amp = bool(parsed(parser, "evaluator#amp", "", info, default=False))
        except MedsegError as error:
            raise _as_backend_error(error) from None
        if len(self.roi_size) != 3 or min(self.roi_size) <= 0:
            raise BackendError(
                f"{shown_path(info.config_file)}: the window size {list(self.roi_size)} is not "
                "three positive numbers."
            )
        pre = [t for t in self.preprocess.rest.transforms if isinstance(t, VistaPreTransformd)]
        self._pre_transform = pre[0] if pre else None

    # -- one request ----------------------------------------------------------------------
    def _model_input(self, request: PromptRequest, affine: np.ndarray):
        """The bundle's preprocessing of the request's image, cached per scan and crop."""
        from napari_medseg.volume import Volume

        key = (request.scan_key, tuple(request.offset), tuple(request.image.shape))
        if key != self._key:
            self._key, self._input = None, None
            try:
                self._input = self.preprocess([Volume(np.asarray(request.image), affine)])
            except MedsegError as error:
                raise _as_backend_error(error) from None
            self._key = key
        return self._input

    def _prompts(self, request: PromptRequest, affine: np.ndarray, model_affine: np.ndarray):
        """Clicks as the bundle's evaluator gives them: model-grid coordinates (1, N, 3) in
        float64 and labels (1, N), 1 positive and 0 negative (3/2 on special classes)."""
        for prompt in request.prompts:
            if prompt.kind != "point":
                raise BackendError(
                    f"VISTA3D takes point prompts only, not a {prompt.kind}: click inside "
                    "the object (and outside it to take a part away)."
                )
        ijk = np.vstack([p.ijk for p in request.prompts])
        to_model = np.linalg.inv(model_affine) @ affine
        points = ijk @ to_model[:3, :3].T + to_model[:3, 3]
        labels = [1 if p.positive else 0 for p in request.prompts]
        if self.label is not None and self._pre_transform is not None:
            data = self._pre_transform({"label_prompt": [self.label], "point_labels": labels})
            labels = list(data["point_labels"])
        return points[None], np.asarray(labels)[None]

    def segment(self, request: PromptRequest) -> np.ndarray:
        import torch
        from monai.apps.vista3d.inferer import point_based_window_inferer
        from monai.apps.vista3d.transforms import VistaPostTransformd
        from monai.inferers import sliding_window_inference

        from napari_medseg.resample import resample_labels

        shape = tuple(request.image.shape)
        if not any(p.positive for p in request.prompts):
            return np.zeros(shape, dtype=bool)
        affine = request.affine
        if affine is None:
            affine = np.diag([*request.spacing_mm, 1.0])
            affine[:3, 3] = np.asarray(request.offset) * np.asarray(request.spacing_mm)
        affine = np.asarray(affine, dtype=np.float64)
        raise_if_cancelled(request.cancel, "interactive segmentation cancelled")
        model_input = self._model_input(request, affine)
        points, labels = self._prompts(request, affine, model_input.affine)
        raise_if_cancelled(request.cancel, "interactive segmentation cancelled")

        device = self.device
        coords = torch.from_numpy(points).to(device)
        point_labels = torch.from_numpy(labels).to(device)
        class_vector = prompt_class = None
        if self.label is not None:
            prompt_class = torch.tensor([[self.label]], device=device)
            # beyond the classes it was trained on VISTA3D runs zero-shot (the bundle's inferer)
            supported = self.label <= int(self.network.point_head.last_supported)
            class_vector = prompt_class.clone() if supported else None
        image = model_input.image[None].to(device)
        amp = self.amp and device.type == "cuda"
        with torch.no_grad(), torch.autocast(device.type, enabled=amp):
            if self.use_point_window:
                logits = point_based_window_inferer(
                    inputs=image,
                    roi_size=self.roi_size,
                    predictor=self.network,
                    point_coords=coords,
                    point_labels=point_labels,
                    class_vector=class_vector,
                    prompt_class=prompt_class,
                    prev_mask=None,
                    transpose=True,
                    labels=None,
                    label_set=None,
                )
            else:
                logits = sliding_window_inference(
                    inputs=image,
                    roi_size=self.roi_size,
                    sw_batch_size=self.sw_batch_size,
                    predictor=self.network,
                    overlap=self.overlap,
                    mode="gaussian",
                    transpose=True,
                    point_coords=coords,
                    point_labels=point_labels,
                    class_vector=class_vector,
                    prompt_class=prompt_class,
                    prev_mask=None,
                    labels=None,
                    label_set=None,
                )
        data = {
            "pred": logits[0].float().cpu(),
            "points": coords.cpu(),
            "point_labels": point_labels.cpu(),
            "label_prompt": None if self.label is None else torch.tensor([self.label]),
        }
        pred = VistaPostTransformd(keys="pred")(data)["pred"]
        pred = torch.as_tensor(pred)[0]
        mask = (torch.nan_to_num(pred, nan=0.0) > 0).numpy().astype(np.uint8)
        back = resample_labels(mask, model_input.affine, shape, affine)
        return back.astype(bool)

    def reset(self) -> None:
        """Nothing per prompt is kept (every request carries all clicks)."""

    def close(self) -> None:
        self._key, self._input = None, None
        self.network = None


__all__ = ["Vista3dBackend", "replace_unknown_readers", "weights_licence"]
