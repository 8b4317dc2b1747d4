#!/usr/bin/env python
"""Interactive segmentation from clicks: Dice after 1, 3, 5 and 10 simulated clicks.

Usage::

    python bench/bench_prompt.py                     # all cases, print the tables
    python bench/bench_prompt.py --write-results     # ... and append them to RESULTS.md
    python bench/bench_prompt.py --cases lung1 ph0-liver --clicks 5 --methods grow
    python bench/bench_prompt.py --no-timing         # skip the 512 x 512 x 300 timing
    python bench/bench_prompt.py --shift-first       # Dice@5 with the first click moved

The simulated user (``napari_medseg.interactive.simulated_user``): the first click at the
object's most interior point, each next one at the most interior point of the largest
error region (positive where the mask missed, negative where it leaked). Each click is
one ``PromptSession.add`` (the session crops around the prompts and widens the crop
while the object reaches its side); its time is the session's own wall time.

Cases (real labels; fetched or generated into ``bench/_data/prompt/`` on the first run):

* **tumour**: ``lung1``, ``lung2`` (chest CT, 0.57-0.63 x 5 mm, lung-tumour contour) and
  ``brain1``, ``brain2`` (T1 post-contrast MR, 0.78 x 6.5 mm, tumour contour) of the
  pyradiomics-bhklab 3.1.4 sdist (``pip download``), at full resolution; the largest
  lesion of each phantom.
* **organ**: liver, spleen and right kidney of the phantoms of seeds 0, 1, 2
  (``napari_medseg.synthetic.phantom``: varied spacing, storage order, noise 5-25 HU);
  the brain of Colin27 (``sample_scans/brain_t1.nii.gz``), reference: ``ch2bet`` of
  Debian's mricron-data, the brain extraction MRIcron ships on the same grid.
* **structure**: left caudate, putamen, thalamus, hippocampus of Colin27, reference:
  the AAL atlas of the same package, drawn on this very brain (Tzourio-Mazoyer et al.
  2002) and on its grid (research-only terms: used here, not shipped).

Methods compared in the same run: ``grow`` (the default, weight-free) and ``threshold``
(the connected-threshold baseline). The timing case: phantom seed 0 on a 512 x 512 x 300
grid (its anatomy resampled by choosing the spacing), the liver, ``--timing-clicks``
clicks.

Goals of issue 15, on 2 CPU cores: Dice >= 0.85 after 5 clicks on organ-sized
structures and >= 0.8 on tumours; at most 0.5 s per click on a 512 x 512 x 300 CT.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_dicom_load import machine_info  # noqa: E402

DATA = HERE / "_data" / "prompt"
SDIST = "pyradiomics-bhklab==3.1.4"
SDIST_DIR = "pyradiomics_bhklab-3.1.4"
PYRAD_CASES = ("lung1", "lung2", "brain1", "brain2")
MRICRON = "usr/share/mricron/templates"
#: AAL label values (aal.nii.txt) of the Colin27 structures.
AAL = {"caudate-L": 71, "putamen-L": 73, "thalamus-L": 77, "hippocampus-L": 37}
PHANTOM_SEEDS = (0, 1, 2)
AFTER = (1, 3, 5, 10)
SHAPE_512 = (512, 512, 300)


# -- data ------------------------------------------------------------------------------------


def _pyradiomics() -> Path:
    """The sdist's ``data/`` folder (downloaded with pip once)."""
    folder = DATA / SDIST_DIR / "data"
    if all((folder / f"{c}_{p}.nrrd").exists() for c in PYRAD_CASES for p in ("image", "label")):
        return folder
    DATA.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", SDIST, "-d", str(DATA)]
    subprocess.run(cmd, check=True, capture_output=True)
    tar_path = next(DATA.glob("pyradiomics_bhklab-3.1.4*.tar.gz"))
    wanted = {f"{SDIST_DIR}/data/{c}_{p}.nrrd" for c in PYRAD_CASES for p in ("image", "label")}
    with tarfile.open(tar_path, "r:gz") as tar:  # only the named regular files
        for member in tar.getmembers():
            if member.name in wanted and member.isfile():
                target = DATA / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    return folder


def _mricron() -> Path:
    """Debian mricron-data's templates folder (``apt-get download`` once)."""
    folder = DATA / "mricron" / MRICRON
    if (folder / "aal.nii.gz").exists():
        return folder
    work = DATA / "mricron"
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "mricron-data"], cwd=work, check=True,
                   capture_output=True)
    deb = next(work.glob("mricron-data_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(work)], check=True)
    return folder


def _save(name, kind, image, truth, affine, note):
    path = DATA / "cases" / f"{name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, image=np.asarray(image, np.float32), truth=np.asarray(truth, bool),
             affine=np.asarray(affine, np.float64), kind=kind, note=note)


def prepare_cases() -> None:
    """Write every case to ``bench/_data/prompt/cases/NAME.npz`` (once)."""
    done = DATA / "cases" / ".complete"
    if done.exists():
        return
    import nibabel as nib
    from scipy import ndimage

    from napari_medseg.io import read_scan
    from napari_medseg.synthetic import phantom as ph

    try:
        folder = _pyradiomics()
        for case in PYRAD_CASES:
            scan = read_scan(folder / f"{case}_image.nrrd")
            label = read_scan(folder / f"{case}_label.nrrd")
            _save(f"{case}-tumour", "tumour", scan.array, np.asarray(label.array) > 0,
                  scan.affine, "pyradiomics-bhklab 3.1.4 contour")
    except (subprocess.CalledProcessError, StopIteration, OSError) as error:
        print(f"pyradiomics cases skipped: {error}")
    try:
        folder = _mricron()
        t1 = nib.load(REPO / "sample_scans" / "brain_t1.nii.gz")
        image = np.asarray(t1.dataobj, dtype=np.float32)
        bet = nib.load(folder / "ch2bet.nii.gz")
        aal = nib.load(folder / "aal.nii.gz")
        for other in (bet, aal):
            assert other.shape == t1.shape and np.allclose(other.affine, t1.affine)
        _save("colin-brain", "organ", image, np.asarray(bet.dataobj) > 0, t1.affine,
              "ch2bet (mricron-data)")
        aal_map = np.asarray(aal.dataobj)
        for name, value in AAL.items():
            _save(f"colin-{name}", "structure", image, aal_map == value, t1.affine, "AAL")
    except (subprocess.CalledProcessError, StopIteration, OSError) as error:
        print(f"Colin27 cases skipped: {error}")
    organs = {ph.LIVER: "liver", ph.SPLEEN: "spleen", ph.RIGHT_KIDNEY: "rkidney"}
    for seed in PHANTOM_SEEDS:
        phantom = ph.make_phantom(seed)
        labels = np.asarray(phantom.labels.array)
        image, affine = phantom.image.array, phantom.image.affine
        for value, name in organs.items():
            _save(f"ph{seed}-{name}", "organ", image, labels == value, affine, "phantom")
        pieces, count = ndimage.label(labels == ph.TUMOUR)
        if count:
            largest = pieces == 1 + int(np.argmax(np.bincount(pieces.ravel())[1:]))
            _save(f"ph{seed}-tumour", "tumour", image, largest, affine, "phantom lesion")
    done.touch()


def phantom_512(seed: int = 0):
    """The phantom of ``seed`` drawn on a 512 x 512 x 300 grid (LPS storage), the same
    anatomy at the spacing that gives that grid (about 35 s; bench_mesh.py uses it too)."""
    from napari_medseg.synthetic.phantom import make_phantom

    drawn = make_phantom(seed).parameters
    extent = np.array(drawn["shape_ras"]) * np.array(drawn["spacing_mm"])
    spacing = extent / (np.array(SHAPE_512) - np.array([0.5, 0.5, 0.0]))
    for _ in range(4):
        phantom = make_phantom(seed, spacing=tuple(spacing), orientation="LPS")
        got = np.array(phantom.parameters["shape_ras"])
        if tuple(got) == SHAPE_512:
            break
        spacing = spacing * got / np.array(SHAPE_512)
    return phantom


def timing_case():
    """(Volume, liver mask): phantom seed 0 on a 512 x 512 x 300 grid (LPS storage)."""
    from napari_medseg.synthetic.phantom import LIVER

    path = DATA / "cases" / "timing-512.npz"
    if path.exists():
        data = np.load(path)
        from napari_medseg.volume import Volume

        return Volume(data["image"], data["affine"]), data["truth"]
    phantom = phantom_512(0)
    truth = np.asarray(phantom.labels.array) == LIVER
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, image=phantom.image.array, truth=truth, affine=phantom.image.affine)
    return phantom.image, truth


# -- running ---------------------------------------------------------------------------------


def run_case(path: Path, method: str, clicks: int, first_shift=(0, 0, 0)) -> dict:
    from napari_medseg.interactive.backends import make_backend
    from napari_medseg.interactive.session import PromptSession
    from napari_medseg.interactive.simulated_user import run_clicks
    from napari_medseg.volume import Volume

    data = np.load(path)
    volume = Volume(data["image"], data["affine"])
    session = PromptSession(volume, make_backend(method))
    run = run_clicks(session, data["truth"], clicks, first_shift=first_shift)
    seconds = np.array(run.seconds)
    return {
        "case": path.stem, "kind": str(data["kind"]), "method": method,
        "dice": [run.dice_after(n) for n in AFTER if n <= clicks],
        "mean_s": float(seconds.mean()), "first_s": float(seconds[0]),
        "max_s": float(seconds.max()), "later_s": float(seconds[1:].mean()) if len(seconds) > 1
        else float("nan"),
        "signs": "".join("+" if c.positive else "-" for c in run.clicks),
        "shape": "x".join(str(n) for n in volume.shape),
        "voxels": int(data["truth"].sum()),
    }


def run_timing(method: str, clicks: int) -> dict:
    from napari_medseg.interactive.backends import make_backend
    from napari_medseg.interactive.session import PromptSession
    from napari_medseg.interactive.simulated_user import run_clicks

    volume, truth = timing_case()
    run = run_clicks(PromptSession(volume, make_backend(method)), truth, clicks)
    seconds = np.array(run.seconds)
    return {
        "method": method, "shape": "x".join(str(n) for n in volume.shape),
        "spacing": "x".join(f"{s:.2f}" for s in volume.spacing), "dice": run.dice,
        "seconds": seconds, "signs": "".join("+" if c.positive else "-" for c in run.clicks),
    }


def in_plane_shifts(path: Path) -> list[tuple[int, int, int]]:
    """No shift, then one voxel either way along each of the case's two finest axes."""
    data = np.load(path)
    spacing = np.sqrt((np.asarray(data["affine"])[:3, :3] ** 2).sum(axis=0))
    shifts = [(0, 0, 0)]
    for axis in np.argsort(spacing, kind="stable")[:2]:
        for step in (1, -1):
            shift = [0, 0, 0]
            shift[int(axis)] = step
            shifts.append(tuple(shift))
    return shifts


def run_shifts(paths, clicks: int, after: int = 5) -> list[str]:
    """Dice after ``after`` clicks of ``grow`` with the first click moved by one voxel
    in-plane (:func:`in_plane_shifts`): the table, and the mean per kind and shift."""
    rows = []
    for path in paths:
        for n, shift in enumerate(in_plane_shifts(path)):
            row = run_case(path, "grow", min(clicks, after), first_shift=shift)
            rows.append((row["case"], row["kind"], n, shift, row["dice"][-1]))
            print(f"{row['case']:22s} shift {shift} Dice@{after} {row['dice'][-1]:.3f}", flush=True)
    variants = sorted({n for *_, n, _s, _d in rows})
    lines = [
        f"Dice after {after} clicks of `grow`, the first click at the object's most interior "
        "point (shift 0) or moved by one voxel either way along the scan's two finest axes "
        "(shifts 1-4):",
        "",
        "| case | kind | " + " | ".join(f"shift {n}" for n in variants) + " |",
        "|---|---|" + "---|" * len(variants),
    ]
    cases = dict.fromkeys(case for case, *_ in rows)
    for case in cases:
        mine = [r for r in rows if r[0] == case]
        lines.append(f"| {case} | {mine[0][1]} | " + " | ".join(f"{r[4]:.3f}" for r in mine) + " |")
    lines += ["", "| kind | " + " | ".join(f"shift {n}" for n in variants)
              + " | mean | min | max |", "|---|" + "---|" * (len(variants) + 3)]  # fmt: skip
    for kind in dict.fromkeys(r[1] for r in rows):
        means = [np.mean([r[4] for r in rows if r[1] == kind and r[2] == n]) for n in variants]
        spread = f" | {np.mean(means):.3f} | {min(means):.3f} | {max(means):.3f} |"
        lines.append(f"| {kind} | " + " | ".join(f"{m:.3f}" for m in means) + spread)
    return lines


def _table(rows, clicks) -> list[str]:
    afters = [n for n in AFTER if n <= clicks]
    lines = [
        "| case | kind | method | " + " | ".join(f"Dice@{n}" for n in afters)
        + " | s/click mean | first | later mean | max | clicks |",
        "|---|---|---|" + "---|" * len(afters) + "---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['kind']} | {r['method']} | "
            + " | ".join(f"{d:.3f}" for d in r["dice"])
            + f" | {r['mean_s']:.2f} | {r['first_s']:.2f} | {r['later_s']:.2f} | "
            f"{r['max_s']:.2f} | `{r['signs']}` |"
        )
    return lines


def _summary(rows, methods, clicks) -> list[str]:
    afters = [n for n in AFTER if n <= clicks]
    lines = [
        "| kind | method | cases | " + " | ".join(f"mean Dice@{n}" for n in afters)
        + " | mean s/click | goal |",
        "|---|---|---|" + "---|" * len(afters) + "---|---|",
    ]
    goals = {"organ": "Dice@5 >= 0.85", "tumour": "Dice@5 >= 0.8", "structure": "(none)"}
    for kind in ("organ", "tumour", "structure"):
        for method in methods:
            sel = [r for r in rows if r["kind"] == kind and r["method"] == method]
            if not sel:
                continue
            mean = np.mean([r["dice"] for r in sel], axis=0)
            lines.append(
                f"| {kind} | {method} | {len(sel)} | " + " | ".join(f"{d:.3f}" for d in mean)
                + f" | {np.mean([r['mean_s'] for r in sel]):.2f} | {goals[kind]} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="*", help="substrings of case names (default: all)")
    parser.add_argument("--methods", nargs="*", default=["grow", "threshold"])
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--timing-clicks", type=int, default=10)
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--write-results", action="store_true")
    parser.add_argument(
        "--shift-first",
        action="store_true",
        help="instead: Dice after 5 clicks of grow with the first click moved by one voxel",
    )
    args = parser.parse_args(argv)
    info = machine_info()
    prepare_cases()
    paths = sorted((DATA / "cases").glob("*.npz"))
    paths = [p for p in paths if p.stem != "timing-512"]
    if args.cases:
        paths = [p for p in paths if any(c in p.stem for c in args.cases)]
    load_before = os.getloadavg()
    started = time.perf_counter()
    if args.shift_first:
        shifted = run_shifts(paths, args.clicks)
        text = "\n".join([
            "`python bench/bench_prompt.py " + " ".join(argv if argv is not None else sys.argv[1:])
            + "`", "", f"Machine: {info['cpu']}, {info['cores']}, {info['ram']} RAM. Commit "
            f"{info['commit']}. Wall time of the run: {time.perf_counter() - started:.0f} s.", "",
            *shifted])  # fmt: skip
        print(text)
        if args.write_results:
            from _results import append_section

            append_section("Interactive segmentation (issue 15): where the first click lands", text)
        return 0
    rows = []
    for method in args.methods:
        for path in paths:
            row = run_case(path, method, args.clicks)
            rows.append(row)
            print(f"{row['case']:22s} {method:9s} " + " ".join(f"{d:.3f}" for d in row["dice"])
                  + f"  {row['mean_s']:.2f} s/click  {row['signs']}", flush=True)
    timings = []
    if not args.no_timing:
        for method in args.methods:
            timings.append(run_timing(method, args.timing_clicks))
            t = timings[-1]
            print("timing", method, t["shape"], np.round(t["seconds"], 2), t["signs"], flush=True)
    load_after = os.getloadavg()
    lines = [
        "`python bench/bench_prompt.py " + " ".join(argv if argv is not None else sys.argv[1:])
        + "`",
        "",
        f"Machine: {info['cpu']}, {info['cores']}, {info['ram']} RAM. Commit {info['commit']}. "
        f"Load average (1, 5 min) before: {load_before[0]:.2f}, {load_before[1]:.2f}; after: "
        f"{load_after[0]:.2f}, {load_after[1]:.2f} (2 cores shared with other work: times are "
        f"upper bounds). Wall time of the run: {time.perf_counter() - started:.0f} s.",
        "",
        *_summary(rows, args.methods, args.clicks),
        "",
        *_table(rows, args.clicks),
    ]
    if timings:
        lines += [
            "",
            "Per-click time on a 512 x 512 x 300 CT (phantom seed 0 resampled onto that grid, "
            "the liver; seconds of each click, in order):",
            "",
            "| method | grid | spacing mm | seconds per click | mean | median | Dice after each |",
            "|---|---|---|---|---|---|---|",
        ]
        for t in timings:
            lines.append(
                f"| {t['method']} | {t['shape']} | {t['spacing']} | "
                + " ".join(f"{s:.2f}" for s in t["seconds"])
                + f" | {t['seconds'].mean():.2f} | {np.median(t['seconds']):.2f} | "
                + " ".join(f"{d:.3f}" for d in t["dice"]) + " |"
            )
    text = "\n".join(lines)
    print(text)
    if args.write_results:
        from _results import append_section

        append_section("Interactive segmentation (issue 15)", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
