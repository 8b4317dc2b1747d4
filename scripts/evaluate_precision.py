"""How far bfloat16 labels differ from float32 labels, per model (numbers of the model cards).

For every model of the catalogue that runs through the project's sliding window, and for
the networks of two MONAI bundles with random weights, the same scan is segmented twice
on the CPU: float32 (``MEDSEG_CPU_BF16=off``) and under bfloat16 autocast
(``MEDSEG_CPU_BF16=force``; emulated by oneDNN on a CPU without native bfloat16, so its
time here says nothing about speed). Reported per model:

* ``differ_fraction``: the fraction of the scan's voxels whose label differs;
* ``agreement``: 1 - that;
* ``dice``: Dice between the two outputs, per class present in either;
* the seconds of each run (network only, and total).

Scans: the bundles' networks on the bundled chest CT (real CT, pyradiomics ``lung1``),
``lungs-ct`` on its 12 central slices (a 2D model segments each slice on its own, so
these are exactly the labels a whole run gives those slices: emulated bfloat16 is too
slow here for all 48); the brain models on the bundled Colin27 T1; the phantom models
on a held-out phantom (their domain; the 2D one on 16 of its slices, likewise).
``brain-mask`` (deepbet) runs its authors' pipeline and stays float32 on the CPU, so it
is not measured.

    python scripts/evaluate_precision.py [--out FILE.json] [--only NAME ...]

A model whose agreement is below 99.5 % gets ``"cpu_bf16": false`` in its spec (by hand:
the script only measures).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_pretrained import cpu_name  # noqa: E402

#: Minimum agreement for bfloat16 to be used on a model (the issue's acceptance bar).
AGREEMENT_BAR = 0.995

#: Networks of two MONAI Model Zoo bundles, as their configs build them (random weights):
#: ``spleen_ct_segmentation`` 0.5 and ``wholeBody_ct_segmentation`` (high resolution).
BUNDLE_NETWORKS = {
    "spleen-unet (random weights)": {
        "network": (
            "UNet",
            {
                "spatial_dims": 3,
                "in_channels": 1,
                "out_channels": 2,
                "channels": [16, 32, 64, 128, 256],
                "strides": [2, 2, 2, 2],
                "num_res_units": 2,
                "norm": "batch",
            },
        ),
        "spacing": (1.5, 1.5, 2.0),
        "intensity": {
            "kind": "scale_range",
            "a_min": -57.0,
            "a_max": 164.0,
            "b_min": 0.0,
            "b_max": 1.0,
            "clip": True,
        },
        "classes": 2,
    },
    "wholebody-segresnet (random weights)": {
        "network": (
            "SegResNet",
            {
                "spatial_dims": 3,
                "in_channels": 1,
                "out_channels": 105,
                "init_filters": 32,
                "blocks_down": [1, 2, 2, 4],
                "blocks_up": [1, 1, 1],
                "dropout_prob": 0.2,
            },
        ),
        "spacing": (1.5, 1.5, 1.5),
        # the bundle's NormalizeIntensityd(nonzero) (its ScaleIntensityd to [-1, 1] after
        # it is left out: the project's intensity steps have no such second step)
        "intensity": {"kind": "normalize", "nonzero": True},
        "classes": 105,
    },
}


def bundle_network_spec(folder: Path, name: str, seed: int = 0) -> Path:
    """Write a spec + random weights for one of :data:`BUNDLE_NETWORKS`; return the spec."""
    import torch
    from monai.networks import nets

    from napari_medseg.labels.classes import LabelClass
    from napari_medseg.models.spec import IntensitySpec, ModelSpec, NetworkSpec

    entry = BUNDLE_NETWORKS[name]
    cls_name, args = entry["network"]
    torch.manual_seed(seed)
    network = getattr(nets, cls_name)(**args)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), folder / "weights.pt")
    spec = ModelSpec(
        name=name.split(" ")[0],
        spatial_dims=3,
        in_channels=1,
        labels=tuple(LabelClass(v, f"class {v}") for v in range(1, entry["classes"])),
        network=NetworkSpec("monai", cls_name, args),
        weights="weights.pt",
        roi_size=(96, 96, 96),
        target_orientation="RAS",
        target_spacing=entry["spacing"],
        intensity=IntensitySpec(**entry["intensity"]),
        overlap=0.25,
        sw_batch_size=4,
        license="Apache-2.0",
    )
    path = folder / "spec.json"
    spec.save_json(path)
    return path


def dice_per_class(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Dice of each non-zero label value present in ``a`` or ``b``."""
    out = {}
    for value in np.union1d(np.unique(a), np.unique(b)):
        if value == 0:
            continue
        x, y = a == value, b == value
        out[str(int(value))] = round(2.0 * int((x & y).sum()) / int(x.sum() + y.sum()), 4)
    return out


def central_slices(volume, count: int):
    """The ``count`` central slices (along K) of ``volume``, with their own affine."""
    from napari_medseg.volume import Volume

    start = max((volume.shape[2] - count) // 2, 0)
    affine = volume.affine.copy()
    affine[:3, 3] = (volume.affine @ [0, 0, start, 1])[:3]
    array = volume.array[:, :, start : start + count]
    return Volume(np.ascontiguousarray(array), affine, volume.metadata)


def _progress(label: str):
    state = {"tenth": -1}

    def report(done: int, total: int) -> None:
        tenth = (10 * done) // max(total, 1)
        if tenth > state["tenth"]:
            state["tenth"] = tenth
            print(f"  {label}: {done}/{total}", file=sys.stderr, flush=True)

    return report


def compare(model, scan) -> dict:
    """Segment ``scan`` in float32 and in bfloat16; how the labels differ."""
    from napari_medseg.inference import Segmenter

    runs = {}
    for mode in ("off", "force"):
        os.environ["MEDSEG_CPU_BF16"] = mode
        segmenter = Segmenter(model, device="cpu")
        runs[mode] = segmenter.predict(scan, progress=_progress(f"{Path(str(model)).stem} {mode}"))
        del segmenter
        gc.collect()
    fp32, bf16 = runs["off"], runs["force"]
    assert bf16.settings["precision"] == "bfloat16", bf16.settings["precision_reason"]
    differ = float((fp32.labels != bf16.labels).mean())
    per_class = dice_per_class(fp32.labels, bf16.labels)
    return {
        "scan_shape": list(scan.shape),
        "differ_fraction": round(differ, 6),
        "agreement": round(1.0 - differ, 6),
        "dice_min": min(per_class.values()) if per_class else None,
        "dice_mean": round(float(np.mean(list(per_class.values()))), 4) if per_class else None,
        "dice": per_class,
        "float32_network_s": round(fp32.timings_s["network"], 1),
        "bfloat16_network_s": round(bf16.timings_s["network"], 1),
        "meets_bar": 1.0 - differ >= AGREEMENT_BAR,
    }


def main(argv: list[str] | None = None) -> int:
    from napari_medseg.inference.devices import cpu_bf16_support
    from napari_medseg.io.reader import read_scan
    from napari_medseg.samples import sample_path
    from napari_medseg.synthetic.phantom import make_phantom

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args(argv)

    chest = read_scan(sample_path("chest_ct"))
    brain = read_scan(sample_path("brain_t1"))
    phantom = make_phantom(9001).image  # a seed outside the training pools
    work = Path(tempfile.mkdtemp(prefix="precision-"))
    # cheapest first: where bfloat16 is emulated (AVX2), a 3D U-Net's convolutions run
    # 100-200x slower than float32, MeshNet's (few channels) about 7x
    jobs = {
        "skull-strip": lambda: compare("skull-strip", brain),
        "brain-tissue": lambda: compare("brain-tissue", brain),
        "brain-structures": lambda: compare("brain-structures", brain),
        "lungs-ct": lambda: compare("lungs-ct", central_slices(chest, 12)),
        "brain-regions": lambda: compare("brain-regions", brain),
        "phantom-abdomen-2d": lambda: compare("phantom-abdomen-2d", central_slices(phantom, 16)),
        "phantom-abdomen-3d": lambda: compare("phantom-abdomen-3d", phantom),
    }
    for name in BUNDLE_NETWORKS:
        folder = work / name.split(" ")[0]
        jobs[name] = lambda n=name, f=folder: compare(bundle_network_spec(f, n), chest)
    support = cpu_bf16_support()
    results = {
        "machine": f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores, {support.describe()}",
        "date": time.strftime("%Y-%m-%d"),
        "note": "bfloat16 forced (MEDSEG_CPU_BF16=force); its seconds are those of "
        + ("native bfloat16" if support.native else "oneDNN's emulation, not a speed"),
        "models": {},
    }
    for name, job in jobs.items():
        if args.only and name not in args.only:
            continue
        results["models"][name] = job()
        print(name, json.dumps(results["models"][name]), flush=True)
        gc.collect()
        if args.out:  # after every model: a long run keeps what it measured
            args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
