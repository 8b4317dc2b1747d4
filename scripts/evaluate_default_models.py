"""Held-out Dice of the default models, through the real inference engine, on the source grid.

Each evaluation phantom (seeds ``EVALUATION_SEED_BASE + i``, disjoint from the training
and validation seeds) is made at its own drawn acquisition: in-plane spacing 0.6-1.0 mm,
slices 1-5 mm, any of the phantom's voxel orders. It is segmented by
:class:`napari_medseg.inference.Segmenter` exactly as ``medseg segment`` would (model grid,
argmax, labels back to the scan grid by nearest neighbour) and compared with the
phantom's labels voxel by voxel on the scan's own grid::

    python scripts/evaluate_default_models.py --model both --phantoms 20

Writes ``evaluation.json`` next to the models (per phantom and per class, mean, median
and minimum) and the Dice table of ``MODEL_CARD.md`` between its
``<!-- evaluation:start -->`` and ``<!-- evaluation:end -->`` markers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_default_models import (  # noqa: E402
    DEFAULT_OUT,
    EVALUATION_SEED_BASE,
    PROFILES,
    dice_per_class,
    machine_description,
)

from napari_medseg.synthetic.phantom import PHANTOM_LABELS, make_phantom  # noqa: E402

LOG = logging.getLogger("evaluate_default_models")

START, END = "<!-- evaluation:start -->", "<!-- evaluation:end -->"
TRAINING_START, TRAINING_END = "<!-- training:start -->", "<!-- training:end -->"
CLASS_NAMES = [label.name for label in PHANTOM_LABELS[1:]]


def evaluate_model(spec_path: Path, seeds: list[int], threads: int) -> dict:
    """Dice per class of one model on the phantoms of ``seeds`` (source grid)."""
    import torch

    from napari_medseg.inference.segmenter import Segmenter

    torch.set_num_threads(threads)
    segmenter = Segmenter(spec_path, device="cpu")
    cases = []
    for seed in seeds:
        started = time.perf_counter()
        phantom = make_phantom(seed)
        made = time.perf_counter()
        result = segmenter.predict(phantom.image)
        assert result.labels.shape == phantom.labels.shape
        assert np.allclose(result.affine, phantom.labels.affine)
        dice = dice_per_class(result.labels, phantom.labels.array, len(PHANTOM_LABELS))
        truth = np.bincount(phantom.labels.array.ravel(), minlength=len(PHANTOM_LABELS))
        p = phantom.parameters
        case = {
            "seed": seed,
            "shape": list(phantom.image.shape),
            "orientation": p["orientation"],
            "spacing_mm": [round(v, 3) for v in p["spacing_mm"]],
            "noise_sd_hu": round(p["noise_sd_hu"], 1),
            "lesions": len(p["lesions"]) + (p["kidney_lesion"] is not None),
            "tumour_voxels": int(truth[-1]),
            # None: the class is absent from both the truth and the prediction
            "dice": {PHANTOM_LABELS[v].name: None if np.isnan(d) else d for v, d in dice.items()},
            "make_s": round(made - started, 2),
            "segment_s": round(time.perf_counter() - made, 2),
        }
        cases.append(case)
        LOG.info(
            "%s seed %d %s %s: %s (%.1f s)",
            spec_path.stem,
            seed,
            case["orientation"],
            case["shape"],
            ", ".join(f"{k} {v if v is None else round(v, 3)}" for k, v in case["dice"].items()),
            case["segment_s"],
        )
    summary = {}
    for name in CLASS_NAMES:
        values = np.array([np.nan if c["dice"][name] is None else c["dice"][name] for c in cases])
        present = values[~np.isnan(values)]
        summary[name] = {
            "mean": float(present.mean()) if present.size else None,
            "median": float(np.median(present)) if present.size else None,
            "min": float(present.min()) if present.size else None,
            "n": int(present.size),
        }
    return {"model": spec_path.stem, "seeds": seeds, "summary": summary, "cases": cases}


def markdown_table(results: dict[str, dict]) -> str:
    """Dice table (mean / min over phantoms) of the evaluated models."""
    lines = [
        "| class | " + " | ".join(f"{name} mean | {name} min" for name in results) + " |",
        "|---|" + "---|---|" * len(results),
    ]
    for cls in CLASS_NAMES:
        cells = []
        for result in results.values():
            s = result["summary"][cls]
            cells += (
                ["n/a", "n/a"] if s["mean"] is None else [f"{s['mean']:.3f}", f"{s['min']:.3f}"]
            )
        lines.append(f"| {cls} | " + " | ".join(cells) + " |")
    first = next(iter(results.values()))
    lines.append("")
    seeds = first["seeds"]
    lines.append(
        f"{len(seeds)} held-out phantoms (seeds {seeds[0]}-{seeds[-1]}), "
        "Dice on each phantom's own voxel grid through `Segmenter` (CPU); the tumour row "
        "counts only phantoms where a tumour is present or predicted "
        f"(n = {', '.join(str(r['summary']['tumour']['n']) for r in results.values())})."
    )
    return "\n".join(lines)


def _start(log: dict) -> str:
    init = log.get("init", "random")
    if isinstance(init, dict):
        return f"stage 1 weights (sha256 {init['sha256'][:12]}...)"
    return "random initialisation"


def training_table(folder: Path) -> str:
    """Facts of the training runs, from the ``*.training.json`` logs next to the weights."""
    rows = [
        ("command", lambda log: f"`{log['command']}`"),
        ("seed", lambda log: str(log["seed"])),
        ("starts from", lambda log: _start(log)),
        ("iterations x batch", lambda log: f"{log['iterations']} x {log['batch']}"),
        ("optimiser", lambda log: log["optimiser"]),
        (
            "crop centre odds",
            lambda log: (
                ", ".join(f"{k} {v:g}" for k, v in log.get("sample_weights", {}).items())
                or "body..kidneys 1, tumour 2"
            ),
        ),
        ("training phantoms", lambda log: str(log["pool_phantoms"])),
        ("parameters", lambda log: f"{log['parameters']:,}"),
        ("weights file", lambda log: f"{log['weights_bytes'] / 2**20:.1f} MiB"),
        ("data preparation", lambda log: f"{log['data_s'] / 60:.1f} min"),
        ("training", lambda log: f"{log['train_s'] / 60:.1f} min"),
        ("CPU threads", lambda log: str(log["threads"])),
        ("machine", lambda log: f"{log['machine']['cpu']}, {log['machine']['cpu_count']} cores"),
        (
            "software",
            lambda log: f"torch {log['machine']['torch']}, MONAI {log['machine']['monai']}",
        ),
        ("finished", lambda log: log["finished"]),
    ]
    logs = {}
    for name in ("3d", "2d"):
        model = PROFILES[name].name
        first = folder / f"{model}.stage1.training.json"  # kept when a second stage followed
        final = folder / f"{model}.training.json"
        if first.is_file() and final.is_file():
            logs[f"`{model}` stage 1"] = json.loads(first.read_text())
            logs[f"`{model}` stage 2"] = json.loads(final.read_text())
        elif final.is_file():
            logs[f"`{model}`"] = json.loads(final.read_text())
    if not logs:
        return "(not trained yet)"
    lines = ["| | " + " | ".join(logs) + " |"]
    lines.append("|---|" + "---|" * len(logs))
    for title, cell in rows:
        lines.append(f"| {title} | " + " | ".join(cell(log) for log in logs.values()) + " |")
    return "\n".join(lines)


def update_card(card: Path, table: str, start: str = START, end: str = END) -> bool:
    """Replace the text between two markers of the model card; False when they are missing."""
    text = card.read_text() if card.is_file() else ""
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    card.write_text(f"{head}{start}\n{table}\n{end}{tail}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["3d", "2d", "both"], default="both")
    parser.add_argument("--phantoms", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models-dir", default=str(DEFAULT_OUT))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)

    folder = Path(args.models_dir)
    output = folder / "evaluation.json"
    previous = json.loads(output.read_text()) if output.is_file() else {"models": {}}
    seeds = [EVALUATION_SEED_BASE + i for i in range(args.phantoms)]
    names = ["3d", "2d"] if args.model == "both" else [args.model]
    for name in names:
        spec_path = folder / f"{PROFILES[name].name}.json"
        started = time.perf_counter()
        result = evaluate_model(spec_path, seeds, args.threads)
        result["wall_s"] = round(time.perf_counter() - started, 1)
        result["command"] = " ".join(["python", *sys.argv])
        result["machine"] = machine_description()
        result["date"] = time.strftime("%Y-%m-%d")
        previous["models"][PROFILES[name].name] = result
    ordered = {
        PROFILES[n].name: previous["models"][PROFILES[n].name]
        for n in ("3d", "2d")
        if PROFILES[n].name in previous["models"]
    }
    table = markdown_table(ordered)
    print(table)
    if not args.no_write:
        from napari_medseg.io.atomic import atomic_output

        with atomic_output(output) as temporary:
            Path(temporary).write_text(json.dumps({"models": ordered}, indent=2) + "\n")
        card = folder / "MODEL_CARD.md"
        if not update_card(card, table):
            LOG.warning("MODEL_CARD.md has no evaluation markers: paste the table by hand")
        update_card(card, training_table(folder), TRAINING_START, TRAINING_END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
