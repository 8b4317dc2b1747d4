"""Measure the real pretrained models of the catalogue on real scans (numbers of the model card).

Every number says what it is measured against:

* ``lungs-ct`` on the bundled chest CT: Dice against an HU lung mask (air below -400 HU
  inside the body, the two largest regions), and both volumes;
* ``skull-strip`` on the Colin27 T1 (Debian ``mricron-data``, ``ch2.nii.gz``): Dice
  against the brain of its skull-stripped copy ``ch2bet.nii.gz``;
* ``brain-structures`` on Colin27: Dice of thalamus, caudate, putamen, pallidum,
  hippocampus and amygdala (left and right together) against the AAL atlas drawn on the
  same brain (``aal.nii.gz``; AAL is used here, never shipped: its terms are its own);
* ``brain-tissue`` on the MNI152 2009 T1 template (``nilearn``): Dice of white and grey
  matter against the template's own tissue probability maps > 0.5;
* ``brain-regions`` on Colin27: the number of its 103 regions found, and the brain volume;

with the time and peak memory (RSS of a child process) of each run on this machine.

    python scripts/evaluate_pretrained.py --colin DIR_WITH_ch2_AND_aal [--out FILE.json]

Get Colin27 and AAL with ``apt-get download mricron-data && dpkg -x mricron-data*.deb x``
(``x/usr/share/mricron/templates``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

AAL_STRUCTURES = {
    "Thalamus": (77, 78),
    "Caudate": (71, 72),
    "Putamen": (73, 74),
    "Pallidum": (75, 76),
    "Hippocampus": (37, 38),
    "Amygdala": (41, 42),
}


def cpu_name() -> str:
    """The processor's model name (Linux), or what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return round(2.0 * int((a & b).sum()) / total, 3) if total else float("nan")


def run_model(model: str, scan: Path, out: Path) -> dict:
    """``medseg segment`` in a child process: labels file, seconds, peak RSS in MB."""
    started = time.perf_counter()
    code = (
        "import resource, sys; from napari_medseg.cli import main; "
        f"rc = main(['segment', {str(scan)!r}, '--model', {model!r}, '-o', {str(out)!r}, "
        "'--overwrite', '--json']); "
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{model} on {scan} failed:\n{result.stderr[-2000:]}")
    peak_kb = int(result.stdout.strip().splitlines()[-1].split()[-1])
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(peak_kb / 1024),
    }


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    image = nib.load(path)
    return np.asarray(image.dataobj), image.affine


def evaluate_lungs(work: Path) -> dict:
    from napari_medseg.samples import sample_path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))
    from test_pretrained import hu_lung_mask

    scan = sample_path("chest_ct")
    out = work / "lungs.nii.gz"
    run = run_model("lungs-ct", scan, out)
    ct, affine = load(scan)
    labels, _ = load(out)
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000
    lungs, reference = labels == 1, hu_lung_mask(ct.astype(np.float32))
    return {
        "scan": "bundled sample chest CT (pyradiomics lung1, 256 x 200 x 48, 1.14 x 1.14 x 5 mm)",
        "reference": "HU lung mask: < -400 HU inside the body, two largest regions",
        "dice_lungs": dice(lungs, reference),
        "model_ml": round(float(lungs.sum() * voxel_ml), 1),
        "reference_ml": round(float(reference.sum() * voxel_ml), 1),
        **run,
    }


def evaluate_skull_strip(colin: Path, work: Path) -> dict:
    out = work / "skull.nii.gz"
    run = run_model("skull-strip", colin / "ch2.nii.gz", out)
    mask = load(out)[0] > 0
    bet = load(colin / "ch2bet.nii.gz")[0] > 0
    return {
        "scan": "Colin27 T1 (mricron-data ch2.nii.gz, 181 x 217 x 181, 1 mm)",
        "reference": "brain of the skull-stripped copy ch2bet.nii.gz",
        "dice_brain": dice(mask, bet),
        "model_ml": round(float(mask.sum()) / 1000, 1),
        "reference_ml": round(float(bet.sum()) / 1000, 1),
        **run,
    }


def evaluate_brain_mask(colin: Path, work: Path) -> dict:
    """``brain-mask`` against ch2bet, and against deepbet's own run (voxels that differ)."""
    out = work / "brain_mask.nii.gz"
    run = run_model("brain-mask", colin / "ch2.nii.gz", out)
    mask = load(out)[0] > 0
    bet = load(colin / "ch2bet.nii.gz")[0] > 0
    result = {
        "scan": "Colin27 T1 (mricron-data ch2.nii.gz = sample_scans/brain_t1.nii.gz)",
        "reference": "brain of ch2bet.nii.gz; deepbet's own BrainExtraction.run",
        "dice_brain": dice(mask, bet),
        "model_ml": round(float(mask.sum()) / 1000, 1),
        "reference_ml": round(float(bet.sum()) / 1000, 1),
    }
    try:
        from deepbet.bet import BrainExtraction
    except ImportError:
        return {**result, **run}
    started = time.perf_counter()
    _, reference, _ = BrainExtraction(no_gpu=True).run(str(colin / "ch2.nii.gz"))
    result["deepbet_run_bet_seconds"] = round(time.perf_counter() - started, 1)
    result["voxels_differing_from_deepbet"] = int(
        ((np.asarray(reference.dataobj) > 0) != mask).sum()
    )
    return {**result, **run}


def evaluate_structures(colin: Path, work: Path) -> dict:
    from napari_medseg.models.registry import default_specs

    out = work / "structures.nii.gz"
    run = run_model("brain-structures", colin / "ch2.nii.gz", out)
    labels = load(out)[0]
    aal = load(colin / "aal.nii.gz")[0]
    spec = default_specs()["brain-structures"][0]
    value = {label.name: label.value for label in spec.labels}
    result = {
        "scan": "Colin27 T1 (mricron-data ch2.nii.gz)",
        "reference": "AAL atlas on the same brain (left + right)",
    }
    for name, pair in AAL_STRUCTURES.items():
        result[f"dice_{name.lower()}"] = dice(labels == value[name], np.isin(aal, pair))
    return {**result, **run}


def evaluate_tissue(work: Path) -> dict:
    import nibabel as nib
    from nilearn import datasets

    template = datasets.load_mni152_template(resolution=1)
    scan = work / "mni152_t1.nii.gz"
    nib.save(template, scan)
    out = work / "tissue.nii.gz"
    run = run_model("brain-tissue", scan, out)
    labels = load(out)[0]
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).dataobj) > 0.5
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).dataobj) > 0.5
    return {
        "scan": "MNI152 2009 T1 template (nilearn, 1 mm)",
        "reference": "the template's grey/white matter probability maps > 0.5",
        "dice_white_matter": dice(labels == 1, wm),
        "dice_grey_matter": dice(labels == 2, gm),
        **run,
    }


def evaluate_regions(colin: Path, work: Path) -> dict:
    out = work / "regions.nii.gz"
    run = run_model("brain-regions", colin / "ch2.nii.gz", out)
    labels = load(out)[0]
    return {
        "scan": "Colin27 T1 (mricron-data ch2.nii.gz)",
        "reference": "none with the same regions here: regions found and labelled volume only",
        "regions_found": int(len(np.unique(labels)) - 1),
        "labelled_ml": round(float((labels > 0).sum()) / 1000, 1),
        **run,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--colin", type=Path, required=True, help="folder with ch2, ch2bet, aal")
    parser.add_argument("--work", type=Path, default=Path("pretrained-evaluation"))
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    jobs = {
        "lungs-ct": lambda: evaluate_lungs(args.work),
        "skull-strip": lambda: evaluate_skull_strip(args.colin, args.work),
        "brain-mask": lambda: evaluate_brain_mask(args.colin, args.work),
        "brain-structures": lambda: evaluate_structures(args.colin, args.work),
        "brain-tissue": lambda: evaluate_tissue(args.work),
        "brain-regions": lambda: evaluate_regions(args.colin, args.work),
    }
    results = {
        "machine": f"{cpu_name()} ({platform.machine()}), {len(os.sched_getaffinity(0))} cores",
        "date": time.strftime("%Y-%m-%d"),
    }
    for name, job in jobs.items():
        if args.only and name not in args.only:
            continue
        results[name] = job()
        print(name, json.dumps(results[name]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
