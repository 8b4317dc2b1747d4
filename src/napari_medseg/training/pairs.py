"""The (scan, corrected labels) pairs a model is fine-tuned on, and their split.

Three places pairs come from (:func:`find_pairs`):

* **a CSV** with columns ``image`` (or ``image_0000``, ``image_0001``... for several
  channels) and ``labels`` (or ``reference``), paths relative to the CSV's folder;
* **a ``medseg batch`` output folder**: each ``<case>/labels.nii.gz`` whose sidecar
  marks it ``edited_by_hand`` (the model's own untouched output would teach it
  nothing), paired with the scan its ``done.json`` names;
* **a folder of the Save widget's outputs**: each labels NIfTI with a sidecar JSON
  (``seg.nii.gz`` + ``seg.json``) paired with the scan the sidecar names, looked for
  beside it (the Save widget's default place: ``<scan>_<layer>.nii.gz`` next to the
  scan, or next to the DICOM folder). Labels drawn by hand (no model in the sidecar)
  and model outputs marked ``edited_by_hand`` are used; untouched model outputs are
  skipped, and said so.

A pair whose label values or names do not match the model's classes is refused with a
message naming the file (:func:`check_pair_classes`). The split
(:func:`split_pairs`) is deterministic: it depends on the pairs' files and the seed
only, not on the order they were found in.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from napari_medseg.errors import FileError, shown_path
from napari_medseg.io.nifti import NIFTI_SUFFIXES
from napari_medseg.io.sidecar import sidecar_path

#: Columns of a pairs CSV.
IMAGE_COLUMN, LABELS_COLUMNS = "image", ("labels", "label", "reference")
#: What a ``medseg batch`` case folder holds.
BATCH_DONE, BATCH_LABELS = "done.json", "labels.nii.gz"


@dataclass(frozen=True)
class TrainingPair:
    """One scan with its corrected label map.

    Attributes
    ----------
    images : tuple of str
        The scan, one file or DICOM folder per model channel.
    labels : str
        Its label map (NIfTI, NRRD...), on the scan's grid.
    origin : str
        How it was found (``"csv"``, ``"batch"``, ``"save"``), for the model card.
    edited_by_hand : bool
        The labels are a model's output corrected by hand (False: drawn by hand, or a
        CSV pair whose history is unknown).
    names : dict
        ``{value: name}`` of the labels' sidecar, when it has one.
    series : str or None
        The DICOM series of ``images[0]`` when its folder holds several.
    """

    images: tuple[str, ...]
    labels: str
    origin: str
    edited_by_hand: bool = False
    names: dict[int, str] = field(default_factory=dict)
    series: str | None = None

    @property
    def key(self) -> str:
        """Identity of the pair (its files' paths)."""
        return "\n".join((*self.images, self.labels))

    @property
    def split_key(self) -> str:
        """What the split hashes: the labels file with its folder's name and the scans'
        names, so the split stays when the data folder is moved or copied."""
        labels = Path(self.labels)
        return "\n".join((labels.parent.name, labels.name, *(Path(p).name for p in self.images)))


@dataclass
class FoundPairs:
    """What :func:`find_pairs` found.

    Attributes
    ----------
    pairs : list of TrainingPair
    skipped : list of str
        One line per file left out and why (shown to the user).
    """

    pairs: list[TrainingPair]
    skipped: list[str] = field(default_factory=list)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _sidecar_model(sidecar: dict) -> dict:
    """The sidecar's ``model`` entry ({} when it has none: labels drawn by hand)."""
    model = sidecar.get("model")
    return model if isinstance(model, dict) else {}


def _sidecar_names(sidecar: dict) -> dict[int, str]:
    names = {}
    labels = sidecar.get("labels")
    for value, name in (labels if isinstance(labels, dict) else {}).items():
        try:
            names[int(value)] = str(name)
        except (TypeError, ValueError):
            continue
    return names


def read_pairs_csv(path: str | os.PathLike) -> FoundPairs:
    """The pairs a CSV lists (see the module notes).

    Raises
    ------
    FileError
        Not a readable CSV, no image or labels column, an empty cell, or a file that
        does not exist (naming the CSV and the line).
    """
    manifest = Path(path)
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise FileError(manifest, f"cannot be read as a CSV of training pairs ({error}).") from None
    header = list(rows[0].keys()) if rows else []
    image_columns = sorted(
        c for c in header if c == IMAGE_COLUMN or c.startswith((f"{IMAGE_COLUMN}_",))
    )
    labels_column = next((c for c in LABELS_COLUMNS if c in header), None)
    if not rows or not image_columns or labels_column is None:
        raise FileError(
            manifest,
            "needs an 'image' column (or image_0000, image_0001... for several channels) "
            "and a 'labels' column, with one row per pair.",
        )
    pairs = []
    for number, row in enumerate(rows, start=2):
        cells = [(row.get(c) or "").strip() for c in (*image_columns, labels_column)]
        if not all(cells):
            raise FileError(manifest, f"line {number}: an empty image or labels cell.")
        resolved = [str(manifest.parent / c) if not os.path.isabs(c) else c for c in cells]
        for item in resolved:
            if not os.path.exists(item):
                raise FileError(manifest, f"line {number}: {shown_path(item)} does not exist.")
        sidecar = _read_json(sidecar_path(Path(resolved[-1]))) or {}
        model = _sidecar_model(sidecar)
        pairs.append(
            TrainingPair(
                images=tuple(resolved[:-1]),
                labels=resolved[-1],
                origin="csv",
                edited_by_hand=bool(model.get("edited_by_hand")),
                names=_sidecar_names(sidecar),
            )
        )
    return FoundPairs(pairs)


def read_batch_folder(folder: Path) -> FoundPairs:
    """The corrected cases of a ``medseg batch`` output folder."""
    found = FoundPairs([])
    for done_path in sorted(folder.glob(f"*/{BATCH_DONE}")):
        case = done_path.parent
        labels = case / BATCH_LABELS
        done = _read_json(done_path)
        if done is None or not labels.is_file():
            found.skipped.append(f"{shown_path(case)}: no readable done.json and labels.nii.gz.")
            continue
        sidecar = _read_json(sidecar_path(labels)) or {}
        model = _sidecar_model(sidecar)
        if not model.get("edited_by_hand"):
            found.skipped.append(
                f"{shown_path(labels)}: the model's output, not corrected by hand (save it "
                "from napari after correcting it to use it)."
            )
            continue
        images = done.get("images")
        images = [str(p) for p in images] if isinstance(images, list) else []
        if not images or not all(os.path.exists(p) for p in images):
            found.skipped.append(f"{shown_path(done_path)}: the scan it names is not there.")
            continue
        found.pairs.append(
            TrainingPair(
                images=tuple(images),
                labels=str(labels),
                origin="batch",
                edited_by_hand=True,
                names=_sidecar_names(sidecar),
                series=done.get("series") or None,
            )
        )
    return found


def saved_pair(labels: str | os.PathLike, sidecar: dict | None = None) -> TrainingPair | str:
    """The pair of a label map the Save widget wrote: its scan is the one its sidecar
    names, beside it. Returns the pair, or why there is none (one line naming the file).
    ``sidecar``: its sidecar's content when the caller read it already.
    """
    labels = Path(labels)
    if sidecar is None:
        sidecar = _read_json(sidecar_path(labels))
    if sidecar is None or "labels" not in sidecar:
        return f"{shown_path(labels)}: no JSON sidecar naming its classes and scan beside it."
    if not isinstance(sidecar["labels"], dict):
        return (
            f"{shown_path(labels)}: the 'labels' entry of its sidecar "
            f'{sidecar_path(labels).name} is not a {{"value": "name"}} mapping.'
        )
    model = _sidecar_model(sidecar)
    edited = bool(model.get("edited_by_hand"))
    if model and not edited:
        return f"{shown_path(labels)}: the model's output, not corrected by hand."
    source = str(sidecar.get("source") or "")
    scan = labels.parent / source if source else None
    if scan is None or not scan.exists() or scan == labels:
        return (
            f"{shown_path(labels)}: the scan its sidecar names ({source or 'none'}) is "
            "not beside it."
        )
    return TrainingPair(
        images=(str(scan),),
        labels=str(labels),
        origin="save",
        edited_by_hand=edited,
        names=_sidecar_names(sidecar),
    )


def read_saved_folder(folder: Path) -> FoundPairs:
    """The label maps the Save widget wrote into ``folder`` (any depth), with their scans."""
    found = FoundPairs([])
    for labels in sorted(p for p in folder.rglob("*") if p.name.lower().endswith(NIFTI_SUFFIXES)):
        sidecar = _read_json(sidecar_path(labels))
        if sidecar is None or "labels" not in sidecar:
            continue  # a scan, or a label map without its sidecar
        pair = saved_pair(labels, sidecar)
        if isinstance(pair, str):
            found.skipped.append(pair)
        else:
            found.pairs.append(pair)
    return found


def write_pairs_csv(path: str | os.PathLike, pairs: Sequence[TrainingPair]) -> Path:
    """Write ``pairs`` as a CSV :func:`read_pairs_csv` reads (absolute paths), atomically.

    Single-channel pairs only (``image``, ``labels``); the Train dock hands its chosen
    pairs to a run this way.
    """
    from napari_medseg.io.atomic import atomic_output

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = max(len(p.images) for p in pairs) if pairs else 1
    header = [IMAGE_COLUMN] if columns == 1 else [f"{IMAGE_COLUMN}_{i:04d}" for i in range(columns)]
    with atomic_output(path) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([*header, LABELS_COLUMNS[0]])
            for pair in pairs:
                images = [str(Path(p).resolve()) for p in pair.images]
                writer.writerow([*images, str(Path(pair.labels).resolve())])
    return path


def find_pairs(data: str | os.PathLike) -> FoundPairs:
    """The training pairs of ``data``: a CSV, a ``medseg batch`` output folder, or a
    folder of the Save widget's outputs (see the module notes).

    Raises
    ------
    FileError
        ``data`` does not exist, or holds no usable pair (the message says what was
        found and skipped).
    """
    path = Path(data).expanduser()
    if not path.exists():
        raise FileError(path, "does not exist.", "Give a folder of saved label maps or a CSV.")
    if path.is_file():
        found = read_pairs_csv(path)
    elif any(path.glob(f"*/{BATCH_DONE}")):
        found = read_batch_folder(path)
    else:
        found = read_saved_folder(path)
    if not found.pairs:
        reasons = "; ".join(line.rstrip(".") for line in found.skipped[:3])
        reasons = reasons or "no label map with a JSON sidecar in it"
        raise FileError(
            path,
            f"holds no (scan, corrected labels) pair to train on: {reasons}.",
            "Save corrected label maps from napari (Save widget: the sidecar names the "
            "scan), or give a CSV with image and labels columns.",
        )
    return found


def check_pair_classes(
    pair: TrainingPair, values: Sequence[int], model_names: dict[int, str], model: str
) -> None:
    """Refuse a pair whose labels the model cannot learn.

    Parameters
    ----------
    pair : TrainingPair
    values : sequence of int
        The label values present in the pair's label map.
    model_names : dict
        ``{value: name}`` of the model's classes (background included).
    model : str
        The model's name, for the message.

    Raises
    ------
    FileError
        A value the model has no class for, or a sidecar that names a value otherwise
        than the model (naming the labels file).
    """
    unknown = sorted(int(v) for v in values if int(v) not in model_names)
    if unknown:
        raise FileError(
            pair.labels,
            f"has label values {unknown} that {model} has no class for (its classes: "
            + ", ".join(f"{v} {n}" for v, n in sorted(model_names.items()))
            + ").",
            "Relabel the map to the model's values, or fine-tune a model with these classes.",
        )
    clashes = [
        f"{value} is {name!r} here but {model_names[value]!r} in {model}"
        for value, name in sorted(pair.names.items())
        if value in model_names
        and value != 0
        and name.strip().lower() != model_names[value].strip().lower()
    ]
    if clashes:
        raise FileError(
            pair.labels,
            "names its labels otherwise than the model: " + "; ".join(clashes[:3]) + ".",
            "Correct the labels with the model's classes, or fix the sidecar's names.",
        )


def split_pairs(
    pairs: Sequence[TrainingPair], val_fraction: float, seed: int
) -> tuple[list[TrainingPair], list[TrainingPair]]:
    """Training and validation pairs: the ``val_fraction`` (at least one, when there
    are two pairs or more) whose seeded hash of :attr:`TrainingPair.split_key` is
    smallest.

    The split depends on the files' names and the seed only, so a resumed run, a DDP
    rank, the model card and a rerun on a moved copy of the data all see the same one.

    Raises
    ------
    ValueError
        ``val_fraction`` outside [0, 1), or fewer than two pairs with a fraction > 0.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"the validation fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0.0:
        return list(pairs), []
    if len(pairs) < 2:
        raise ValueError(
            f"{len(pairs)} pair: at least 2 are needed to hold one out for validation "
            "(or give held-out pairs with --val-data)."
        )
    ranked = sorted(
        pairs, key=lambda p: (hashlib.sha256(f"{seed}\n{p.split_key}".encode()).hexdigest(), p.key)
    )
    n_val = min(len(pairs) - 1, max(1, round(val_fraction * len(pairs))))
    chosen = {p.key for p in ranked[:n_val]}
    return [p for p in pairs if p.key not in chosen], [p for p in pairs if p.key in chosen]


__all__ = [
    "FoundPairs",
    "TrainingPair",
    "check_pair_classes",
    "find_pairs",
    "read_batch_folder",
    "read_pairs_csv",
    "read_saved_folder",
    "saved_pair",
    "split_pairs",
    "write_pairs_csv",
]
