"""Publish a fine-tuned model: a new model folder in the user's library, with its card.

The folder (:mod:`napari_medseg.models.library`) holds the spec (the parent's, with the
new name, weights and SHA-256, the parent's licence and intended use), the weights
(a ``state_dict``), the parent's licence notice when it has one, ``MODEL_CARD.md``
(parent, data with hashes, settings, time, Dice per class before and after, date,
machine, licence) and ``training.json`` (the run's log). It is written beside its final
place and renamed into it in one step, never over an existing folder, so a reader sees
a whole model or none; the catalogue lists it at once (``medseg models``, the Segment
widget, ``medseg segment --model NAME``, ``medseg batch --model NAME``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from napari_medseg.errors import FileError

CARD_NAME, LOG_NAME = "MODEL_CARD.md", "training.json"


def _dice_table(names: list[str], before: dict, after: dict) -> list[str]:
    lines = ["| class | parent | fine-tuned | change |", "|---|---|---|---|"]
    for name in names:
        a = before.get("dice_per_class", {}).get(name)
        b = after.get("dice_per_class", {}).get(name)
        change = f"{b - a:+.4f}" if a is not None and b is not None else "—"
        lines.append(
            f"| {name} | {'—' if a is None else f'{a:.4f}'} | "
            f"{'—' if b is None else f'{b:.4f}'} | {change} |"
        )
    a, b = before.get("mean_dice"), after.get("mean_dice")
    lines.append(f"| **mean** | {a:.4f} | {b:.4f} | {b - a:+.4f} |")
    return lines


def parent_licence(parent) -> tuple[str, str]:
    """The parent's licence (SPDX id or "unknown") and its notice file ("" if none): the
    spec's, or for a bundle the licence file in its folder."""
    spec = parent.spec
    if parent.details.get("kind") == "monai_bundle":
        from napari_medseg.models.licence import licence_of_folder

        found = licence_of_folder(Path(parent.details["folder"]))
        return found[0], Path(found[1]).name if found[1] else ""
    return spec.license, Path(spec.license_file).name if spec.license_file else ""


def model_card(name: str, parent, log: dict[str, Any], before: dict, after: dict) -> str:
    """The model card's Markdown (``parent``: the LoadedModel fine-tuned)."""
    parent_spec = parent.spec
    licence, notice = parent_licence(parent)
    settings = log["settings"]
    names = [label.name for label in parent_spec.labels if label.value != 0]
    data = log["data"]
    history = log["history"]
    train_rows = [row for row in data if row["split"] == "train"]
    val_rows = [row for row in data if row["split"] == "validation"]
    wall = sum(1 for _ in history)
    lines = [
        f"# {name}",
        "",
        f"Fine-tuned from **{parent_spec.name}** ({parent_spec.title or parent_spec.name}) by "
        f"`medseg finetune` on {len(train_rows)} corrected label maps, validated on "
        f"{len(val_rows)} held-out ones. Published {time.strftime('%Y-%m-%d %H:%M %z')}.",
        "",
        "## Licence",
        "",
        f"{licence}, inherited from the parent's weights"
        + (f" (notice: `{notice}`)." if notice else "."),
        f"Parent source: {parent_spec.source or 'not recorded'}.",
        "",
        "## Intended use",
        "",
        parent_spec.intended_use or "As the parent model's.",
        "Fine-tuned on a few of one user's scans: check it on scans like those before "
        "trusting it on others; the numbers below are on the held-out pairs only.",
        "",
        "## Validation Dice on the held-out pairs (scan grid, through the Segmenter)",
        "",
        *_dice_table(names, before, after),
        "",
        f"Best epoch {log['best_epoch']} of {len(history) - 1} run "
        f"({settings['epochs']} at most, early stopping after {settings['patience']} "
        "without gain).",
        "",
        "## Training",
        "",
        f"- parent weights SHA-256: `{log['parent'].get('weights_sha256', '')}`",
        f"- processes: {log['processes']}, device: {log['device']}, AMP: {log['amp']}",
        f"- patch {log['patch']} model voxels, batch {settings['batch_size']} per process, "
        f"{log['steps_per_epoch']} steps per epoch",
        f"- patches: centred by class, about {settings.get('focus', 0):.0%} of them where the "
        "parent's labels were corrected",
        f"- loss: {log['loss']}; optimiser: {log['optimiser']}; seed {settings['seed']}",
        f"- time: {history[-1]['elapsed_s'] if history else 0:.0f} s for {wall - 1} epochs "
        "(validation included)",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
        "",
        "## Data",
        "",
        "| split | labels | SHA-256 (labels) | scan | SHA-256 (scan) | corrected by hand |",
        "|---|---|---|---|---|---|",
    ]
    for row in data:
        lines.append(
            f"| {row['split']} | {Path(row['labels']).name} | `{row['labels_sha256'][:16]}` | "
            f"{Path(row['images'][0]).name} | `{row['images_sha256'][0][:16]}` | "
            f"{'yes' if row['edited_by_hand'] else 'drawn or unknown'} |"
        )
    lines += ["", "Full paths, hashes and the epoch history are in `training.json`.", ""]
    return "\n".join(lines)


def publish_model(
    library: Path,
    name: str,
    parent,
    state_dict: dict,
    log: dict[str, Any],
    *,
    parent_score: dict,
    best_score: dict,
) -> Path:
    """Write the fine-tuned model's folder ``library/name``; returns its spec JSON.

    Parameters
    ----------
    library : Path
        The model library folder.
    name : str
        The new model's name (and folder).
    parent : LoadedModel
        The model it was fine-tuned from.
    state_dict : dict
        The best epoch's weights.
    log : dict
        The run's log (settings, data, history).
    parent_score, best_score : dict
        :meth:`ValidationScore.to_dict` of the parent and of the new model.

    Raises
    ------
    FileError
        ``library/name`` exists already.
    """
    target = library / name
    if target.exists():
        raise FileError(target, "exists already: a published model is never replaced.")
    library.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=library))
    try:
        if parent.details.get("kind") == "monai_bundle":
            spec_path = _write_bundle(staging, name, parent, state_dict, log)
        else:
            spec_path = _write_spec_model(staging, name, parent, state_dict, log)
        (staging / CARD_NAME).write_text(
            model_card(name, parent, log, parent_score, best_score), encoding="utf-8"
        )
        (staging / LOG_NAME).write_text(
            json.dumps({**log, "parent_score": parent_score, "best_score": best_score},
                       indent=2, default=str) + "\n",
            encoding="utf-8",
        )  # fmt: skip
        if parent.details.get("kind") == "monai_bundle":  # last: the card is not code
            from napari_medseg.models.library import BUNDLE_MARKER, bundle_code_hashes

            marker = {"parent": parent.source, "code_sha256": bundle_code_hashes(staging)}
            (staging / BUNDLE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        os.chmod(staging, 0o755)
        try:
            os.rename(staging, target)  # fails if another run took the name meanwhile
        except OSError as error:
            raise FileError(target, f"cannot be published ({error}).") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target / spec_path.relative_to(staging)


def _save_weights(state_dict: dict, path: Path) -> str:
    """Save a ``state_dict`` (on the CPU) to ``path``; return its SHA-256."""
    import torch

    from napari_medseg.models.build import sha256_file

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, path)
    return sha256_file(path)


def _write_bundle(staging: Path, name: str, parent, state_dict: dict, log: dict) -> Path:
    """A copy of the parent bundle with the new weights where its config loads them, and
    its metadata's version and changelog saying what was done; returns its metadata."""
    folder = Path(parent.details["folder"])
    weights = Path(parent.details["weights"]).relative_to(folder)
    shutil.copytree(
        folder, staging, dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", "eval", "*.ts"),
    )  # fmt: skip
    _save_weights(state_dict, staging / weights)
    metadata_path = staging / "configs" / "metadata.json"
    metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    version = f"{metadata.get('version', '0')}+ft.{time.strftime('%Y%m%d%H%M')}"
    metadata["version"] = version
    trained = sum(1 for r in log["data"] if r["split"] == "train")
    changelog = metadata.get("changelog") if isinstance(metadata.get("changelog"), dict) else {}
    metadata["changelog"] = {
        version: f"fine-tuned by napari-medseg (medseg finetune) on {trained} corrected label "
        f"maps as {name}; see {CARD_NAME}",
        **changelog,
    }
    metadata_path.write_text(json.dumps(metadata, indent=4) + "\n", encoding="utf-8")
    return metadata_path


def _write_spec_model(staging: Path, name: str, parent, state_dict: dict, log: dict) -> Path:
    """The parent's spec with the new name and weights (and its licence notice); returns
    the spec file."""
    parent_spec = parent.spec
    weights = staging / f"{name}.pt"
    digest = _save_weights(state_dict, weights)
    licence_file = ""
    if parent_spec.license_file and parent_spec.resolve(parent_spec.license_file).is_file():
        licence_file = Path(parent_spec.license_file).name
        shutil.copyfile(parent_spec.resolve(parent_spec.license_file), staging / licence_file)
    spec = dataclasses.replace(
        parent_spec,
        name=name,
        title=f"{parent_spec.title or parent_spec.name}, fine-tuned ({name})",
        description=f"{parent_spec.description} Fine-tuned from {parent_spec.name} on "
        f"{sum(1 for r in log['data'] if r['split'] == 'train')} corrected label maps "
        f"(see {CARD_NAME}).",
        weights=weights.name,
        weights_sha256=digest,
        model_card=CARD_NAME,
        license_file=licence_file,
        source=f"fine-tuned from {parent_spec.name} (weights "
        f"{parent.details.get('weights_sha256', '')[:16]}) by medseg finetune",
        base_dir="",
    )
    spec.save_json(staging / f"{name}.json")
    return staging / f"{name}.json"


__all__ = ["model_card", "publish_model"]
