"""What is known about a model before it is loaded: read from JSON only, no torch.

The Segment widget shows and checks this when the user picks a model (input channels
to offer, sliding-window defaults, whether a bundle must be trusted), and the same
answer serves any front end that lists models without loading them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_medseg.models.licence import licence_of_folder


@dataclass(frozen=True)
class ModelChoice:
    """What is known about a model before it is loaded (read from JSON only).

    Attributes
    ----------
    ref : str
        What :func:`napari_medseg.models.registry.load_model` takes: a catalogue
        name, a bundle folder, a spec JSON or a network file.
    kind : {"catalogue", "bundle", "nnunet", "file"}
        A catalogue entry, a bundle folder outside the catalogue, an nnU-Net v2 model
        folder, or a model file.
    in_channels : int or None
        Input channels (None: not known before download or load).
    channel_names : tuple of str
        Names of the input channels, when the model gives them.
    overlap : float or None
        The model's sliding-window overlap (None: the model decides when loaded).
    sw_batch_size : int or None
        The model's windows per network call.
    needs_trust : bool
        A bundle folder outside the catalogue: its configs run Python code.
    summary : str
        One line for the widget (title, or what is wrong).
    error : str
        Why the model cannot be used ("" when it can).
    license : str
        Licence of the weights (``"unknown"`` when not stated).
    intended_use : str
        What the model is for ("" when not stated).
    """

    ref: str
    kind: str
    in_channels: int | None = 1
    channel_names: tuple[str, ...] = ()
    overlap: float | None = None
    sw_batch_size: int | None = None
    needs_trust: bool = False
    summary: str = ""
    error: str = ""
    license: str = "unknown"
    intended_use: str = ""

    @property
    def licence_line(self) -> str:
        """One line on the licence and use, flagging weights not for commercial use."""
        from napari_medseg.models.licence import is_non_commercial

        flag = " - NOT for commercial use" if is_non_commercial(self.license) else ""
        use = f" Use: {self.intended_use}" if self.intended_use else ""
        return f"Licence: {self.license}{flag}.{use}"


def _from_spec(ref: str, kind: str, spec: Any) -> ModelChoice:
    return ModelChoice(
        ref,
        kind,
        in_channels=int(spec.in_channels),
        channel_names=tuple(spec.channel_names or ()),
        overlap=float(spec.overlap),
        sw_batch_size=int(spec.sw_batch_size),
        summary=spec.title or spec.name,
        license=str(spec.license or "unknown"),
        intended_use=str(spec.intended_use or ""),
    )


def _from_bundle(ref: str, kind: str, folder: Path) -> ModelChoice:
    from napari_medseg.models.bundle_config import BundleError, read_bundle_info

    try:
        info = read_bundle_info(folder)
    except BundleError as error:
        return ModelChoice(ref, kind, None, summary=str(error), error=str(error))
    title = f"{info.name} {info.version}".strip()
    return ModelChoice(
        ref,
        kind,
        in_channels=int(info.in_channels),
        channel_names=tuple(info.channel_names),
        needs_trust=kind == "bundle",
        summary=f"MONAI bundle {title}",
        license=licence_of_folder(folder)[0],
    )


def _from_nnunet(ref: str, folder: Path) -> ModelChoice:
    from napari_medseg.models.nnunet import NnUNetFolderError, read_nnunet_info

    try:
        info = read_nnunet_info(folder)
    except NnUNetFolderError as error:
        return ModelChoice(ref, "nnunet", None, summary=str(error), error=str(error))
    folds = len(info.folds)
    return ModelChoice(
        ref,
        "nnunet",
        in_channels=len(info.channel_names) or None,
        channel_names=info.channel_names,
        overlap=0.5,
        sw_batch_size=1,
        summary=f"nnU-Net {info.name} ({folds} fold{'s' if folds != 1 else ''})",
        license=licence_of_folder(folder)[0],
    )


def _from_file(path: Path) -> ModelChoice:
    from napari_medseg.models.registry import NETWORK_SUFFIXES
    from napari_medseg.models.spec import ModelSpec, ModelSpecError

    ref = str(path)
    spec_file = path if path.suffix.lower() == ".json" else path.with_suffix(".json")
    if path.suffix.lower() not in (".json", *NETWORK_SUFFIXES):
        error = (
            f"{path}: not a model file; expected a spec .json or a network file "
            f"({', '.join(NETWORK_SUFFIXES)}) with a .json spec beside it."
        )
        return ModelChoice(ref, "file", None, summary=error, error=error)
    if not spec_file.is_file():
        error = (
            f"{path}: a network file needs a JSON spec beside it ({spec_file.name} not "
            "found): it says which channels, grid, window and labels the network expects."
        )
        return ModelChoice(ref, "file", None, summary=error, error=error)
    try:
        return _from_spec(ref, "file", ModelSpec.from_json(spec_file))
    except ModelSpecError as error:
        return ModelChoice(ref, "file", None, summary=str(error), error=str(error))


def describe_model(ref: str) -> ModelChoice:
    """What the widget shows and checks for a model, without importing torch.

    Parameters
    ----------
    ref : str
        A catalogue name, a MONAI bundle folder, an nnU-Net v2 model folder, a spec
        JSON or a network file (``.ts``, ``.pt``...) with a JSON spec beside it.

    Returns
    -------
    ModelChoice
        ``error`` says what is wrong when the model cannot be used as given.
    """
    from napari_medseg.models import registry

    path = Path(str(ref)).expanduser()
    named = registry.named_spec(str(ref))  # a default model or one of the user's
    if named is not None:
        return _from_spec(str(ref), "catalogue", named[0])
    bundle = registry.library_bundle(str(ref))  # a fine-tuned bundle of the user's
    if bundle is not None:
        return _from_bundle(str(ref), "catalogue", bundle)
    entry = registry.find_entry(str(ref))
    if entry is not None:  # a zoo bundle: channels known once it is downloaded
        from napari_medseg.models.zoo import bundle_cache_dir, get_entry

        cached = bundle_cache_dir() / get_entry(entry.name).folder_name
        if registry.is_bundle_folder(cached):
            return _from_bundle(entry.name, "catalogue", cached)
        summary = f"{entry.title or entry.name} (downloaded on first use)"
        return ModelChoice(entry.name, "catalogue", None, summary=summary)
    if path.is_dir():
        from napari_medseg.models.nnunet import is_nnunet_folder

        if is_nnunet_folder(path):
            return _from_nnunet(str(path), path)
        return _from_bundle(str(path), "bundle", path)
    if path.is_file():
        return _from_file(path)
    error = f"{ref}: no such model file or folder, and not a catalogue name."
    return ModelChoice(str(ref), "file", None, summary=error, error=error)


__all__ = ["ModelChoice", "describe_model"]
