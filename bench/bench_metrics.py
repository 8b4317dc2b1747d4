#!/usr/bin/env python
"""Measuring a 512 x 512 x 300 label map: napari-medseg vs MONAI's metric functions.

Usage::

    python bench/bench_metrics.py                  # print a markdown table
    python bench/bench_metrics.py --write-results  # ... and append it to bench/RESULTS.md
    python bench/bench_metrics.py --profile        # cProfile of our one-pass measurement
    python bench/bench_metrics.py --shape 256 256 120 --rounds 2   # a quick check

The data are made in memory from a fixed seed (about 10 s): a chest-like int16 HU
scan (``bench_dicom_load.phantom_hu``: air, body, lungs, spine, noise) on a 0.7 x 0.7
x 1.25 mm grid, a label map of 10 organ-sized blobs (smoothly deformed ellipsoids,
radii 15-90 mm, each painted into the scan with its own HU) and a reference that
differs from it as a second reader's contours would: every blob redrawn with another
boundary deformation, scaled by up to +-6 % and moved by up to 2 voxels.

What is measured (same process, same data, same run)
----------------------------------------------------
1. **One pass** -- every label's voxel count and volume, HU statistics (mean, SD,
   median, p5, p95, min, max) and Dice, IoU, sensitivity, precision and volume
   difference against the reference:

   * ours: ``tally_labels`` + ``label_statistics(diameters=False)`` +
     ``compare_labels(distances=False)``, sharing one pass;
   * "the MONAI way": ``monai.metrics.compute_dice`` on one-hot (boolean) tensors
     (made before the clock starts: that is MONAI's input format), plus the volume
     and HU statistics of each label through a numpy mask (``image[labels == c]``);
   * the same with ``compute_dice`` on class-index tensors (``num_classes``), MONAI's
     low-memory input.

   Goals: >= 3x faster than the MONAI way, and under 1 s.
2. **Bounding boxes and centroids**: ours come from the same pass; compared with
   ``scipy.ndimage.find_objects`` + ``center_of_mass`` (not counted in 1).
3. **HD95** of every label: ours (``compare_labels`` distances: surfaces inside the
   label's bounding box, KD-tree) against ``monai.metrics.compute_hausdorff_distance``
   (``percentile=95``, spacing) on each label's binary masks (made before the clock
   starts), MONAI's CPU path. Goal: >= 10x faster.

Every compared number must agree (Dice to 1e-6, HU statistics to 1e-9, HD95 to
float32 precision, boxes and centroids exactly); the script asserts it. Times are
medians of ``--rounds`` rounds (MONAI's HD95: ``--hd-rounds``, default 1, as it takes
tens of seconds).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "RESULTS.md"
sys.path.insert(0, str(HERE))

from bench_dicom_load import bench_affine, machine_info, phantom_hu  # noqa: E402

SHAPE = (512, 512, 300)
N_LABELS = 10
SEED = 20240607
STAT_KEYS = ("mean", "sd", "median", "p5", "p95", "min", "max")


# ------------------------------------------------------------------------ the data


def _blob(shape, centre, radii, noise_seed):
    """Slices and mask of a deformed ellipsoid (voxel units) inside its bounding box."""
    box = tuple(
        slice(max(int(c - r * 1.15) - 2, 0), min(int(c + r * 1.15) + 3, n))
        for c, r, n in zip(centre, radii, shape, strict=True)
    )
    grid = np.ogrid[box]
    distance = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True))
    noise_rng = np.random.default_rng(noise_seed)
    field = ndimage.gaussian_filter(noise_rng.normal(size=distance.shape), 4.0)
    field /= field.std() + 1e-12
    return box, distance + 0.12 * field < 1.0


def make_data(shape=SHAPE, n_labels=N_LABELS, seed=SEED):
    """(labels, reference, image, affine): uint8, uint8, int16 HU, 4x4 RAS; C order.

    The blobs sit in the cells of a 4 x 3 layout across the slice plane (10 of the 12
    cells), so neighbours may touch but none hides another.
    """
    rng = np.random.default_rng(seed)
    affine = bench_affine(shape)
    spacing = np.abs(np.diag(affine)[:3])
    image = phantom_hu(shape, rng)
    labels = np.zeros(shape, np.uint8)
    reference = np.zeros(shape, np.uint8)
    cell = np.array([shape[0] / 4, shape[1] / 3, shape[2]])
    cells = [(a, b) for a in range(4) for b in range(3)]
    for value, n in zip(range(1, n_labels + 1), rng.permutation(len(cells)), strict=False):
        a, b = cells[n]
        radii_mm = rng.uniform(15.0, 90.0) * rng.uniform(0.6, 1.0, 3)
        radii = np.minimum(radii_mm / spacing, cell * np.array([0.42, 0.42, 0.3]))
        centre = np.array(
            [
                (a + 0.5) * cell[0],
                (b + 0.5) * cell[1],
                rng.uniform(radii[2] + 3, shape[2] - radii[2] - 3),
            ]
        )
        box, mask = _blob(shape, centre, radii, seed + value)
        labels[box][mask] = value
        hu = rng.uniform(-100.0, 250.0)
        region = image[box]
        region[mask] = np.clip(hu + rng.normal(0, 20, mask.sum()), -1024, 3071).astype(np.int16)
        moved = centre + rng.integers(-2, 3, 3)
        scaled = radii * rng.uniform(0.94, 1.06, 3)
        box, mask = _blob(shape, moved, scaled, seed + 1000 + value)
        reference[box][mask] = value
    return labels, reference, image, affine


# ------------------------------------------------------------------------ the contenders


def ours_one_pass(labels, reference, image, affine):
    from napari_medseg.measure.overlap import compare_labels
    from napari_medseg.measure.stats import label_statistics
    from napari_medseg.measure.tally import tally_labels

    tally = tally_labels(labels, reference, image)
    stats = label_statistics(labels, affine, image, diameters=False, tally=tally)
    overlap = compare_labels(labels, reference, affine, distances=False, tally=tally)
    return tally, stats, overlap


def time_ours_fortran(labels, reference, image, affine, rounds):
    """Times of our one pass on Fortran-ordered copies (nibabel's layout)."""
    fortran = [np.asfortranarray(a) for a in (labels, reference, image)]
    return timed(lambda: ours_one_pass(*fortran, affine), rounds)[0]


def numpy_mask_stats(labels, image, affine, values):
    """Volume and HU statistics of each label through a numpy mask (the usual way)."""
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000
    out = {}
    for value in values:
        mask = labels == value
        v = image[mask].astype(np.float64)
        p5, median, p95 = np.percentile(v, [5, 50, 95])
        out[value] = {
            "volume_ml": mask.sum() * voxel_ml,
            "mean": v.mean(),
            "sd": v.std(ddof=1),
            "median": median,
            "p5": p5,
            "p95": p95,
            "min": v.min(),
            "max": v.max(),
        }
    return out


def monai_one_hot(labels, n_classes):
    import torch

    stacked = np.stack([labels == c for c in range(n_classes)])
    return torch.from_numpy(stacked)[None]


def monai_way(one_hot_pred, one_hot_ref, labels, image, affine, values):
    from monai.metrics import compute_dice

    dice = compute_dice(one_hot_pred, one_hot_ref, include_background=False)[0]
    return dice, numpy_mask_stats(labels, image, affine, values)


def time_monai_way(labels, reference, image, affine, rounds):
    """Time :func:`monai_way` on one-hot tensors made (and freed) outside the clock."""
    values = list(range(1, N_LABELS + 1))
    pred_hot = monai_one_hot(labels, N_LABELS + 1)
    ref_hot = monai_one_hot(reference, N_LABELS + 1)
    return timed(lambda: monai_way(pred_hot, ref_hot, labels, image, affine, values), rounds)


def monai_way_index(pred_index, ref_index, n_classes, labels, image, affine, values):
    from monai.metrics import compute_dice

    dice = compute_dice(pred_index, ref_index, include_background=False, num_classes=n_classes)[0]
    return dice, numpy_mask_stats(labels, image, affine, values)


def scipy_boxes_centroids(labels, values):
    boxes = ndimage.find_objects(labels)
    centres = ndimage.center_of_mass(labels, labels, values)
    return boxes, centres


def ours_distances(labels, reference, affine, tally):
    from napari_medseg.measure.overlap import compare_labels

    return compare_labels(labels, reference, affine, tally=tally)


def monai_hd95(labels, reference, spacing, value):
    """MONAI's HD95 of one label; returns (seconds for the call, value)."""
    import torch
    from monai.metrics import compute_hausdorff_distance

    pred = torch.from_numpy(labels == value)[None, None]
    ref = torch.from_numpy(reference == value)[None, None]
    start = time.perf_counter()
    hd = compute_hausdorff_distance(
        pred, ref, include_background=True, percentile=95, spacing=list(spacing)
    )
    return time.perf_counter() - start, float(hd[0, 0])


# ------------------------------------------------------------------------ the run


#: Kernel time and minor page faults of the last :func:`timed` call, per round.
USAGE: dict[str, float] = {}


def timed(call, rounds):
    """Wall times of ``rounds`` calls and the last result; fills :data:`USAGE`."""
    times, result = [], None
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(rounds):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF)
    USAGE["sys_s"] = (after.ru_stime - before.ru_stime) / rounds
    USAGE["faults"] = (after.ru_minflt - before.ru_minflt) / rounds
    return times, result


def run(args: argparse.Namespace) -> str:
    import monai
    import torch

    from napari_medseg.measure.stats import label_statistics

    warnings.filterwarnings("ignore")  # MONAI's deprecation chatter
    torch.set_num_threads(os.cpu_count() or 1)
    shape = tuple(args.shape)
    t0 = time.perf_counter()
    labels, reference, image, affine = make_data(shape)
    made_s = time.perf_counter() - t0
    spacing = np.abs(np.diag(affine)[:3])
    values = [int(v) for v in range(1, N_LABELS + 1)]
    n_classes = N_LABELS + 1
    load_before = os.getloadavg()

    # 1. one pass
    ours_t, (tally, stats, overlap) = timed(
        lambda: ours_one_pass(labels, reference, image, affine), args.rounds
    )
    ours_usage = dict(USAGE)
    ours_f_t = time_ours_fortran(labels, reference, image, affine, args.rounds)
    monai_t, (dice, mask_stats) = time_monai_way(labels, reference, image, affine, args.rounds)
    monai_usage = dict(USAGE)
    pred_idx = torch.from_numpy(labels)[None, None]
    ref_idx = torch.from_numpy(reference)[None, None]
    index_t, (dice_idx, _) = timed(
        lambda: monai_way_index(pred_idx, ref_idx, n_classes, labels, image, affine, values),
        args.rounds,
    )
    stats_only_t, _ = timed(
        lambda: label_statistics(labels, affine, image, diameters=False), args.rounds
    )
    masks_only_t, _ = timed(lambda: numpy_mask_stats(labels, image, affine, values), args.rounds)
    assert [o.label for o in overlap] == values and all(o.empty == "none" for o in overlap)
    for row, o, d, di in zip(stats, overlap, dice, dice_idx, strict=True):
        assert abs(o.dice - float(d)) <= 1e-6 and abs(o.dice - float(di)) <= 1e-6, row.label
        expected = mask_stats[row.label]
        assert abs(row.volume_ml - expected["volume_ml"]) <= 1e-9 * expected["volume_ml"]
        for key in STAT_KEYS:
            got, want = getattr(row.intensity, key), expected[key]
            assert abs(got - want) <= 1e-9 * max(1.0, abs(want)), (row.label, key, got, want)

    # 2. boxes and centroids
    scipy_t, (boxes, centres) = timed(lambda: scipy_boxes_centroids(labels, values), args.rounds)
    for row, box, centre in zip(stats, boxes, centres, strict=True):
        assert row.bbox_ijk == tuple((s.start, s.stop - 1) for s in box), row.label
        ras = affine[:3, :3] @ np.array(centre) + affine[:3, 3]
        assert np.allclose(row.centroid_ras_mm, ras, atol=1e-9), row.label
    diameter_t, _ = timed(lambda: label_statistics(labels, affine, image, tally=tally), args.rounds)

    # 3. HD95
    hd_t, distances = timed(lambda: ours_distances(labels, reference, affine, tally), args.rounds)
    monai_hd_rounds = []
    monai_hd_values = {}
    for _ in range(args.hd_rounds):
        total = 0.0
        for value in values:
            seconds, monai_hd_values[value] = monai_hd95(labels, reference, spacing, value)
            total += seconds
        monai_hd_rounds.append(total)
    for o in distances:
        want = monai_hd_values[o.label]
        assert abs(o.hd95_mm - want) <= 1e-5 * max(1.0, want), (o.label, o.hd95_mm, want)
    load_after = os.getloadavg()

    med = statistics.median
    info = machine_info()
    fg = np.count_nonzero(labels) / labels.size
    rows = [
        (
            "volumes + HU stats + Dice/IoU/sens/prec, 10 labels",
            "napari_medseg one pass (tally_labels)",
            ours_t,
            "MONAI compute_dice (one-hot) + numpy masks",
            monai_t,
        ),
        (
            "the same",
            "napari_medseg one pass (tally_labels)",
            ours_t,
            "MONAI compute_dice (class index) + numpy masks",
            index_t,
        ),
        (
            "the same, arrays in Fortran order (as nibabel returns them)",
            "napari_medseg one pass (tally_labels)",
            ours_f_t,
            "MONAI compute_dice (one-hot) + numpy masks, C order",
            monai_t,
        ),
        (
            "volumes + HU stats only (no reference), 10 labels",
            "napari_medseg label_statistics (own pass)",
            stats_only_t,
            "numpy masks (image[labels == c]) only",
            masks_only_t,
        ),
        (
            "bounding boxes + centroids, 10 labels",
            "napari_medseg (in the one pass, 0 s extra)",
            [0.0],
            "scipy find_objects + center_of_mass",
            scipy_t,
        ),
        (
            "HD95 (+ HD, ASSD, surface Dice), 10 labels",
            "napari_medseg compare_labels distances",
            hd_t,
            "MONAI compute_hausdorff_distance (HD95 only)",
            monai_hd_rounds,
        ),
    ]
    lines = [
        "`" + " ".join(["python bench/bench_metrics.py", *sys.argv[1:]]) + "`",
        "",
        f"Machine: {info['cpu']}, {info['cores']}, {info['ram']} RAM. Commit {info['commit']}. "
        f"Python {info['python']}, numpy {info['numpy']}, MONAI {monai.__version__}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads). Load average (1 min) "
        f"before/after the timing: {load_before[0]:.2f} / {load_after[0]:.2f} (other "
        "processes compete for the cores when it is well above 0).",
        "",
        f"Data: {' x '.join(map(str, shape))} voxels ({labels.size / 1e6:.1f} M; C order "
        f"unless said), 0.7 x 0.7 x 1.25 mm, uint8 labels (10 blobs, {100 * fg:.1f} % of the "
        "voxels), int16 HU image, "
        f"perturbed reference (Dice {min(o.dice for o in overlap):.2f}.."
        f"{max(o.dice for o in overlap):.2f}); made in {made_s:.1f} s. Rounds: {args.rounds} "
        f"(MONAI HD95: {args.hd_rounds}).",
        "Check: Dice equal to MONAI's (1e-6), volumes and HU statistics equal to numpy "
        "masks (1e-9), boxes and centroids equal to scipy's, HD95 equal to MONAI's "
        "(float32).",
        "",
        "| measure | ours | median s | reference | median s | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for what, ours_name, ours_times, ref_name, ref_times in rows:
        ours_med, ref_med = med(ours_times), med(ref_times)
        ratio = f"{ref_med / ours_med:.1f}x" if ours_med > 0 else "-"
        lines.append(
            f"| {what} | {ours_name} | {ours_med:.3f} | {ref_name} | {ref_med:.3f} | {ratio} |"
        )
    one_pass, monai_s, hd_ours, hd_monai = (
        med(ours_t),
        med(monai_t),
        med(hd_t),
        med(monai_hd_rounds),
    )
    lines += [
        "",
        "Kernel time and minor page faults per round (large temporary arrays cost page "
        f"faults): one pass {ours_usage['sys_s']:.2f} s, {ours_usage['faults']:.0f} faults; "
        f"MONAI way {monai_usage['sys_s']:.2f} s, {monai_usage['faults']:.0f} faults.",
        "Maximum 3D diameters on top (surfaces + convex hulls of the 10 labels): "
        f"label_statistics with diameters, reusing the pass, {med(diameter_t):.3f} s.",
        f"All runs, s: one pass {', '.join(f'{t:.3f}' for t in ours_t)}; MONAI way "
        f"{', '.join(f'{t:.3f}' for t in monai_t)}; HD ours "
        f"{', '.join(f'{t:.3f}' for t in hd_t)}; HD MONAI "
        f"{', '.join(f'{t:.2f}' for t in monai_hd_rounds)}.",
        f"Goals: one pass >= 3x faster than the MONAI way: "
        f"{'met' if monai_s / one_pass >= 3 else 'NOT met'} ({monai_s / one_pass:.1f}x); "
        f"under 1 s: {'met' if one_pass < 1 else 'NOT met'} ({one_pass:.3f} s); HD95 >= 10x "
        f"faster than MONAI: {'met' if hd_monai / hd_ours >= 10 else 'NOT met'} "
        f"({hd_monai / hd_ours:.1f}x).",
    ]
    return "\n".join(lines)


def profile(args: argparse.Namespace) -> None:
    import cProfile
    import pstats

    labels, reference, image, affine = make_data(tuple(args.shape))
    ours_one_pass(labels, reference, image, affine)  # warm
    prof = cProfile.Profile()
    prof.enable()
    ours_one_pass(labels, reference, image, affine)
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument(
        "--hd-rounds", type=int, default=1, help="rounds of MONAI's HD95 (default 1, slow)"
    )
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=list(SHAPE),
        metavar=("I", "J", "K"),
        help="volume size (default 512 512 300)",
    )
    parser.add_argument(
        "--write-results",
        action="store_true",
        help=f"append a dated section to {RESULTS.relative_to(REPO)}",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile our one pass instead of benchmarking"
    )
    args = parser.parse_args(argv)
    if args.profile:
        profile(args)
        return 0
    text = run(args)
    print(text)
    if args.write_results:
        from _results import append_section

        append_section("Label-map measurements", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
