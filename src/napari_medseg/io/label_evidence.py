"""Is a file a label map or an image, and what do its values mean?

:func:`label_map_evidence` decides for a :class:`~napari_medseg.volume.Volume` read by
:func:`napari_medseg.io.read_scan` (the napari reader opens the file as a labels layer
or an image layer on its answer), and gathers the class names and colours kept beside
the file. The evidence, strongest first:

1. **Never labels** (whatever else is beside the file): a CT (DICOM modality CT, or a
   NIfTI whose values run from air to tissue in Hounsfield units, as ``read_scan``
   guesses) or any other image modality (MR, a DICOM image series); NaN or infinite
   voxels (as labels they would silently become 0); fractional values (an MR or a
   probability map stored as float); negative values.
2. **napari-medseg's sidecar** beside the file (``seg.nii.gz`` -> ``seg.json``,
   :func:`napari_medseg.io.sidecar.sidecar_path`): a JSON object with a ``labels``
   mapping and the sidecar's ``colors``/``model``/``source`` entries (a BIDS sidecar of
   a scan has no ``labels`` and is ignored). Its names and colours are the classes.
3. **The NIfTI intent** ``NIFTI_INTENT_LABEL`` (1002) or ``NIFTI_INTENT_NEURONAME``
   (1003), as ``read_nifti`` keeps it in ``metadata.extra["intent_code"]``.
4. **A names file beside it** that names every value the file holds: ``<stem>.txt``,
   ``<stem>.ctbl``, ``<stem>.label``, ``<stem>.json`` (``<stem>`` is the file name
   without ``.nii.gz``/``.nrrd``...), or a colour table ``*LUT.txt`` in the folder
   (FreeSurfer), read by :func:`napari_medseg.io.label_names.read_label_classes`.
5. **A segmentation format**: a 3D Slicer ``.seg.nrrd`` (``extra["kind"] ==
   "labels"``), a DICOM SEG or RT Structure Set (modality ``SEG``/``RTSTRUCT``); their
   classes come with them (``extra["classes"]``).
6. **The values**: whole numbers, background (0) among them, with at most
   :data:`MAX_VALUES` distinct values, or at most :data:`MAX_VALUES_NAMED` with a file
   name that says labels (:data:`LABEL_NAME_HINTS`: ``label``, ``seg``, ``mask``,
   ``tumour``...).

Anything else is an image (a phantom or a thresholded image with a few grey values
but no 0, say). Which value is the most common plays no part: a body mask or a
model's "body" class may cover most of the volume.

Values are counted on a strided sample of about a million voxels
(:func:`value_sample`). The classes of a label map are taken from the first of: the
sidecar, a names file, the format's own classes; a class without a colour is given
one that differs from its neighbours' (:func:`napari_medseg.labels.colors.complete_colors`).

Core module: no napari, no Qt.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_medseg.volume import Volume

#: NIfTI intent codes of a label map, with their names.
LABEL_INTENTS = {1002: "NIFTI_INTENT_LABEL", 1003: "NIFTI_INTENT_NEURONAME"}
#: A file with at most this many distinct whole values is a label map.
MAX_VALUES = 16
#: ... and with at most this many when its name says so (:data:`LABEL_NAME_HINTS`).
MAX_VALUES_NAMED = 255
#: Words in a file name that say it holds labels.
LABEL_NAME_HINTS = ("label", "seg", "mask", "tumour", "tumor", "lesion", "roi")
#: Endings stripped from a file name to find names files beside it (longest first).
SCAN_SUFFIXES = (".seg.nrrd", ".nii.gz", ".hdr.gz", ".nrrd", ".nhdr", ".nii", ".hdr", ".img")
#: Names files looked for beside a file, as ``<stem><ending>``.
NAMES_FILE_ENDINGS = (".txt", ".ctbl", ".label", ".json")
#: Keys of napari-medseg's sidecar besides ``labels`` (one of them must be there).
SIDECAR_KEYS = ("colors", "model", "source")
#: Voxels counted for the value statistics.
SAMPLE_VOXELS = 1_000_000

ClassTable = dict[int, tuple[str, str]]


@dataclass(frozen=True)
class Decision:
    """What a volume is, and why.

    Attributes
    ----------
    kind : {"labels", "image"}
        How to show it.
    reason : str
        The evidence, in words (``"napari-medseg sidecar seg.json beside it"``,
        ``"CT in Hounsfield units"``...).
    classes : dict
        ``{value: (name, "#rrggbb")}`` of a label map, every colour filled in; empty
        for an image or a label map nothing names.
    classes_from : str
        Where the classes came from: a file path, ``"the file"`` (a segmentation
        format's own), or ``""``.
    warnings : tuple of str
        What the user should know (a sidecar or names file beside it that could not
        be read), each naming the file.
    """

    kind: str
    reason: str
    classes: ClassTable = field(default_factory=dict)
    classes_from: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def is_labels(self) -> bool:
        """Whether the volume is a label map."""
        return self.kind == "labels"


# ------------------------------------------------------------------ values
def value_sample(array: np.ndarray, target: int = SAMPLE_VOXELS) -> np.ndarray:
    """A strided subsample of about ``target`` voxels, flattened, finite values only."""
    step = max(1, int(np.ceil((array.size / max(target, 1)) ** (1.0 / 3.0))))
    sample = np.asarray(array[::step, ::step, ::step])
    if np.issubdtype(sample.dtype, np.floating):
        sample = sample[np.isfinite(sample)]
    return sample.ravel()


def _not_labels_by_values(sample: np.ndarray) -> str:
    """Why these values cannot be labels ("" when they can)."""
    if sample.size == 0:
        return "it holds no finite voxel"
    kind = sample.dtype.kind
    if kind == "f":
        whole = sample == np.rint(sample)
        if not whole.all():
            example = float(sample[~whole][0])
            return f"it holds fractional values (e.g. {example:.4g}): intensities, not labels"
    elif kind not in "iub":
        return f"it holds {sample.dtype} values"
    low = sample.min()
    if low < 0:
        return f"it holds negative values (down to {low:.6g})"
    return ""


# ------------------------------------------------------------------ files beside it
def file_stem(path: str | os.PathLike) -> str:
    """A file name without its scan ending (``seg.nii.gz`` -> ``seg``)."""
    name = Path(path).name
    lower = name.lower()
    for suffix in SCAN_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _json_object(path: Path) -> tuple[dict | None, str]:
    """A JSON file's object, or None and why it could not be read ("" when it is valid
    JSON but not an object)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as error:
        return None, f"cannot be read ({error})"
    except json.JSONDecodeError as error:
        return None, f"is not valid JSON ({error})"
    return (data, "") if isinstance(data, dict) else (None, "")


def read_plugin_sidecar(source: str | os.PathLike) -> tuple[ClassTable | None, Path, str]:
    """The classes of napari-medseg's sidecar beside a label map.

    Parameters
    ----------
    source : path
        The label map file.

    Returns
    -------
    classes : dict or None
        ``{value: (name, "#rrggbb" or "")}``; None when there is no sidecar (or the
        JSON beside the file is someone else's, e.g. a BIDS sidecar of a scan).
    path : pathlib.Path
        Where the sidecar was looked for.
    problem : str
        Why a sidecar that is there could not be used ("" when it was, or is absent).
    """
    from napari_medseg.io.label_names import LabelNamesError, read_label_classes
    from napari_medseg.io.sidecar import sidecar_path

    path = sidecar_path(source)
    if not path.is_file() or _same_file(path, source):
        return None, path, ""
    data, problem = _json_object(path)
    if data is None:
        return None, path, problem
    labels = data.get("labels")
    if not isinstance(labels, dict) or not any(key in data for key in SIDECAR_KEYS):
        return None, path, ""  # another tool's JSON
    try:
        return read_label_classes(path), path, ""
    except LabelNamesError as error:
        return None, path, error.problem


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def names_files_beside(source: str | os.PathLike) -> list[Path]:
    """Names files that may describe a label map: ``<stem>.txt`` (and ``.ctbl``,
    ``.label``, ``.json``) beside it, then any ``*LUT.txt`` in its folder."""
    source = Path(source)
    folder = source.parent
    stem = file_stem(source)
    found = [folder / f"{stem}{ending}" for ending in NAMES_FILE_ENDINGS]
    found = [p for p in found if p.is_file() and not _same_file(p, source)]
    try:
        luts = sorted(
            folder / entry.name
            for entry in os.scandir(folder)
            if entry.name.lower().endswith("lut.txt") and entry.is_file()
        )
    except OSError:
        luts = []
    return found + [p for p in luts if p not in found]


def _names_file(
    source: str, present: np.ndarray
) -> tuple[ClassTable | None, Path | None, ClassTable | None, Path | None, list[str]]:
    """The first names file beside ``source`` that names every value present (the
    evidence), and the first readable one at all (classes for a map found otherwise)."""
    from napari_medseg.io.label_names import LabelNamesError, read_label_classes
    from napari_medseg.io.sidecar import sidecar_path

    warnings: list[str] = []
    first: tuple[ClassTable | None, Path | None] = (None, None)
    for path in names_files_beside(source):
        if path.suffix.lower() == ".json":
            data, problem = _json_object(path)
            if data is None:
                if problem and path != sidecar_path(source):  # the sidecar's step said it
                    warnings.append(f"{path}: {problem}; its label names are not used.")
                continue
        try:
            classes = read_label_classes(path)
        except LabelNamesError as error:
            if path.suffix.lower() != ".json":  # a JSON that is no names file: a BIDS sidecar
                warnings.append(f"{error} Its label names are not used.")
            continue
        if not classes:
            continue
        if first[0] is None:
            first = (classes, path)
        named = set(classes) | {0}
        if all(int(v) in named for v in present.tolist()):
            return classes, path, classes, path, warnings
    return None, None, first[0], first[1], warnings


# ------------------------------------------------------------------ the decision
def _image(reason: str, warnings: list[str] | None = None) -> Decision:
    return Decision("image", reason, warnings=tuple(warnings or ()))


def _labels(
    reason: str, classes: ClassTable | None, classes_from: str, warnings: list[str]
) -> Decision:
    from napari_medseg.labels.colors import complete_colors

    table = complete_colors(classes) if classes else {}
    return Decision("labels", reason, table, classes_from if table else "", tuple(warnings))


def _name_hint(source: str) -> str:
    name = Path(source).name.lower()
    return next((hint for hint in LABEL_NAME_HINTS if hint in name), "")


def label_map_evidence(volume: Volume) -> Decision:
    """Decide whether a volume read from a file is a label map, and find its classes.

    Parameters
    ----------
    volume : Volume
        As :func:`napari_medseg.io.read_scan` (or the DICOM SEG / RT Structure Set
        readers) returned it: ``metadata.source`` is the file (names files and the
        sidecar are looked for beside it), ``metadata.modality``/``units`` the CT
        guess, ``metadata.nonfinite_voxels`` the NaN/inf count, ``metadata.extra``
        the NIfTI intent (``intent_code``) or a segmentation's ``kind`` and
        ``classes``.

    Returns
    -------
    Decision
        See the module notes for the order of the evidence.
    """
    meta = volume.metadata
    extra = meta.extra if isinstance(meta.extra, dict) else {}
    source = str(meta.source or "")
    modality = (meta.modality or "").upper()
    own = extra.get("classes") if isinstance(extra.get("classes"), dict) else None

    # 1. never labels
    if modality in ("SEG", "RTSTRUCT"):
        what = "a DICOM SEG" if modality == "SEG" else "a DICOM RT Structure Set"
        return _labels(what, own, "the file", [])
    if modality == "CT" or (meta.units or "").upper() == "HU":
        how = " (guessed from its values)" if extra.get("modality_guessed") else ""
        return _image(f"a CT in Hounsfield units{how}")
    if modality or meta.format == "dicom":
        return _image(f"a {modality or 'DICOM'} image series")
    if meta.nonfinite_voxels:
        return _image(f"it holds {meta.nonfinite_voxels} NaN or infinite voxels")
    sample = value_sample(volume.array)
    why_not = _not_labels_by_values(sample)
    if why_not:
        return _image(why_not)
    present = np.unique(sample)
    warnings: list[str] = []

    # 2. napari-medseg's sidecar
    sidecar_classes, sidecar, problem = (None, None, "")
    if source:
        sidecar_classes, sidecar, problem = read_plugin_sidecar(source)
        if problem:
            warnings.append(f"{sidecar}: {problem}; its label names and colours are not used.")
    if sidecar_classes is not None:
        return _labels(
            f"napari-medseg sidecar {sidecar.name} beside it",
            sidecar_classes,
            str(sidecar),
            warnings,
        )
    evidence_names, evidence_path, any_names, any_path = None, None, None, None
    if source:
        evidence_names, evidence_path, any_names, any_path, notes = _names_file(source, present)
        warnings += notes
    classes, classes_from = (any_names, str(any_path)) if any_names else (own, "the file")

    # 3. the NIfTI intent
    intent = extra.get("intent_code")
    if intent in LABEL_INTENTS:
        return _labels(
            f"NIfTI intent {LABEL_INTENTS[intent]} ({intent})", classes, classes_from, warnings
        )
    # 4. a names file that names every value
    if evidence_names is not None:
        return _labels(
            f"label names file {evidence_path.name} beside it names its values",
            evidence_names,
            str(evidence_path),
            warnings,
        )
    # 5. a segmentation format
    if extra.get("kind") == "labels":
        return _labels("a 3D Slicer segmentation", classes, classes_from, warnings)
    # 6. the values: a few whole values, background (0) among them
    count = len(present)
    if present[0] != 0:
        return _image(
            f"none of its voxels is 0 (background) and no sidecar, label intent or names "
            f"file says it holds labels; its lowest value is {present[0]}",
            warnings,
        )
    if count <= MAX_VALUES:
        return _labels(
            f"{count} distinct whole values (at most {MAX_VALUES})", classes, classes_from, warnings
        )
    hint = _name_hint(source)
    if hint and count <= MAX_VALUES_NAMED:
        return _labels(
            f"{count} distinct whole values and '{hint}' in its file name",
            classes,
            classes_from,
            warnings,
        )
    limit = (
        f"more than {MAX_VALUES_NAMED} even for a file named '{hint}'"
        if hint
        else (f"more than {MAX_VALUES}")
    )
    return _image(
        f"{count} or more distinct values ({limit}) and no sidecar, label intent or "
        "names file says it holds labels",
        warnings,
    )


def describe(decision: Decision) -> str:
    """One line for logs: ``"labels: NIfTI intent ... (7 classes from seg.json)"``."""
    text = f"{decision.kind}: {decision.reason}"
    if decision.classes:
        where = os.path.basename(decision.classes_from) or decision.classes_from
        text += f" ({len(decision.classes)} classes from {where})"
    return text


__all__ = [
    "LABEL_INTENTS",
    "LABEL_NAME_HINTS",
    "MAX_VALUES",
    "MAX_VALUES_NAMED",
    "Decision",
    "describe",
    "file_stem",
    "label_map_evidence",
    "names_files_beside",
    "read_plugin_sidecar",
    "value_sample",
]
