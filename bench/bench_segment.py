"""End-to-end time and peak memory: `medseg segment` against `python -m monai.bundle run`.

Both sides segment the same image with the same MONAI bundle folder (same
``inference.json``, same ``models/model.pt``), each in a fresh subprocess with the same
torch thread count. Measured per run: wall-clock time of the whole process (interpreter
start, imports, reading, preprocessing, network, postprocessing, writing) and its peak
resident memory (``ru_maxrss`` of that child from ``os.wait4``). The bundle runs with
``--dataloader#num_workers 0`` so all of its work happens in the one measured process
(with worker processes its memory would be split over several, and the max of one
would understate it). Both outputs are read back and compared voxel by voxel.

Bundles (written by ``tests/bundle_factory.py`` with the real configs' network sizes and
random seeded weights): ``spleen`` (UNet (16, 32, 64, 128, 256), roi 96, 1.5 x 1.5 x 2 mm,
2 classes), ``wholebody`` (SegResNet init_filters 32, 105 classes, roi 96, 1.5 mm) and
``wholebody_lowres`` (the same bundle's 3.0 mm ``highres=false`` setting).

Our side runs twice: ``--no-amp`` (float32) and with mixed precision on (the default:
bfloat16 on a CPU with native bfloat16, float32 elsewhere; the precision that ran is read
from its log). ``--force-bf16`` runs the second one under ``MEDSEG_CPU_BF16=force``
(bfloat16 even where oneDNN emulates it: its time then shows the emulation's cost, not a
speed). The report names the CPU's bfloat16 capability.

Inputs: ``sample_ct`` (the bundled chest CT, 256 x 200 x 48) and ``ct512`` (a synthetic
chest CT, 512 x 512 x 300, 0.7 mm pixels, 1.25 mm slices, LPS-stored, written once to
``bench/_data/segment/``).

Usage::

    python bench/bench_segment.py                       # all cases, print the table
    python bench/bench_segment.py --cases spleen:sample_ct wholebody_lowres:ct512
    python bench/bench_segment.py --threads 2 --write-results
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "_data" / "segment"
RESULTS = HERE / "RESULTS.md"
MIB = 1024 * 1024

sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))

#: bundle kind -> (factory, keyword arguments): the real configs' network sizes.
BUNDLES = {
    "spleen": (
        "write_spleen_like",
        {
            "channels": (16, 32, 64, 128, 256),
            "strides": (2, 2, 2, 2),
            "num_res_units": 2,
            "roi": (96, 96, 96),
            "fit_steps": 40,
        },
    ),
    "wholebody": ("write_wholebody_like", {"init_filters": 32, "roi": (96, 96, 96)}),
    "wholebody_lowres": (
        "write_wholebody_like",
        {"init_filters": 32, "roi": (96, 96, 96), "highres": False},
    ),
}
INPUTS = ("sample_ct", "ct512")
DEFAULT_CASES = (
    "spleen:sample_ct",
    "spleen:ct512",
    "wholebody:sample_ct",
    "wholebody_lowres:ct512",
)
#: Also runnable (``--cases wholebody:ct512``), not by default: the bundle's own run keeps
#: 105 float32 maps of the 1.5 mm grid twice (about 12 GiB) and takes well over 10 minutes
#: on two CPU cores.


def ensure_bundle(kind: str) -> Path:
    """The benchmark bundle folder of ``kind`` (written once; reused while unchanged)."""
    import bundle_factory

    factory, kwargs = BUNDLES[kind]
    root = DATA / "bundles" / kind
    stamp = root / "params.json"
    params = {
        "factory": factory,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
    }
    folders = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    if folders and stamp.is_file() and json.loads(stamp.read_text()) == params:
        return folders[0]
    import shutil

    import torch

    shutil.rmtree(root, ignore_errors=True)
    torch.set_num_threads(1)
    folder = getattr(bundle_factory, factory)(root, **kwargs)
    stamp.write_text(json.dumps(params))
    return folder


def ensure_input(name: str) -> Path:
    """``<dataset_dir>/imagesTs/<name>.nii.gz`` (the bundles' datalist glob); returns the file."""
    import nibabel as nib

    target = DATA / name / "imagesTs" / f"{name}.nii.gz"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if name == "sample_ct":
        from napari_medseg.samples import sample_path

        target.write_bytes(sample_path("chest_ct").read_bytes())
    else:
        from bench_dicom_load import SEED, SHAPE, bench_affine, phantom_hu

        print(f"generating {SHAPE} CT into {target} ...", file=sys.stderr)
        hu = phantom_hu(SHAPE, np.random.default_rng(SEED))
        nib.save(nib.Nifti1Image(hu, bench_affine(SHAPE)), target)
    return target


#: Our two runs: float32, and mixed precision (the default).
OURS = {"medseg": ["--no-amp"], "medseg_amp": []}


def commands(bundle: Path, image: Path, out: Path) -> dict[str, list[str]]:
    """The command lines (ours in float32 and with mixed precision, MONAI's) for one case."""
    medseg = Path(sys.executable).with_name("medseg")
    ours = {
        side: [
            str(medseg),
            "segment",
            str(image),
            "-o",
            str(out / f"{side}.nii.gz"),
            "--model",
            str(bundle),
            "--trust-bundle",
            "--device",
            "cpu",
            "--overwrite",
            *extra,
        ]
        for side, extra in OURS.items()
    }
    return {
        **ours,
        "monai": [
            sys.executable,
            "-m",
            "monai.bundle",
            "run",
            "--meta_file",
            str(bundle / "configs" / "metadata.json"),
            "--config_file",
            str(bundle / "configs" / "inference.json"),
            "--bundle_root",
            str(bundle),
            "--output_dir",
            str(out / "monai"),
            "--dataset_dir",
            str(image.parent.parent),
            "--dataloader#num_workers",
            "0",
        ],
    }


def measure(cmd: list[str], threads: int, log: Path, cpu_bf16: str = "auto") -> dict:
    """Run ``cmd`` in a child process; wall time and the child's own peak RSS."""
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        PYTHONWARNINGS="ignore",
        MEDSEG_CPU_BF16=cpu_bf16,
    )
    with open(log, "w") as handle:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}); see {log}")
    return {"wall_s": wall, "peak_mib": usage.ru_maxrss * 1024 / MIB}


def agreement(out: Path, image: Path) -> dict:
    """Voxel agreement of our float32 labels with MONAI's and with our mixed-precision
    ones, our affine against the input's, and the precision our second run used."""
    import re

    import nibabel as nib

    ours = nib.load(out / "medseg.nii.gz")
    (saved,) = sorted((out / "monai").rglob("*.nii.gz"))
    theirs = nib.load(saved)
    a = np.asanyarray(ours.dataobj).astype(np.int32)
    b = np.rint(np.asanyarray(theirs.dataobj)).astype(np.int32).reshape(a.shape)
    mixed = np.asanyarray(nib.load(out / "medseg_amp.nii.gz").dataobj).astype(np.int32)
    log = (out / "medseg_amp.log").read_text()
    ran = re.search(r"on cpu, (\w+) \(", log)
    source = nib.load(image)
    return {
        "agree": float((a == b).mean()),
        "amp_agree": float((a == mixed).mean()),
        "amp_precision": ran.group(1) if ran else "?",
        "affine_mm": float(np.abs(ours.affine - source.affine).max()),
        "labels": int(len(np.unique(b))),
    }


def run_case(case: str, threads: int, rounds: int, cpu_bf16: str = "auto") -> dict:
    kind, input_name = case.split(":")
    bundle, image = ensure_bundle(kind), ensure_input(input_name)
    out = DATA / "runs" / case.replace(":", "_")
    out.mkdir(parents=True, exist_ok=True)
    cmds = commands(bundle, image, out)
    runs: dict[str, list[dict]] = {side: [] for side in cmds}
    for _ in range(rounds):  # alternate sides so drifting load hits both
        for side in cmds:
            if side == "monai":
                import shutil

                shutil.rmtree(out / "monai", ignore_errors=True)
            mode = cpu_bf16 if side == "medseg_amp" else "off"
            runs[side].append(measure(cmds[side], threads, out / f"{side}.log", mode))
            print(f"  {case} {side}: {runs[side][-1]}", file=sys.stderr)
    best = {side: min(r["wall_s"] for r in rs) for side, rs in runs.items()}
    peak = {side: max(r["peak_mib"] for r in rs) for side, rs in runs.items()}
    return {
        "case": case,
        "bundle": str(bundle),
        "image": str(image),
        "runs": runs,
        "best": best,
        "peak": peak,
        "check": agreement(out, image),
        "commands": cmds,
    }


def machine() -> dict:
    import monai
    import torch
    from bench_dicom_load import machine_info

    from napari_medseg.inference.devices import cpu_bf16_support

    info = machine_info()
    info.update(torch=torch.__version__, monai=monai.__version__)
    info["bf16"] = cpu_bf16_support().describe()
    info["load"] = os.getloadavg()[0]
    return info


def report(
    results: list[dict], info: dict, threads: int, argv: list[str], forced: bool = False
) -> str:
    from _results import heading

    lines = [
        heading("Segmentation, medseg vs monai.bundle run"),
        "",
        f"`python bench/bench_segment.py {shlex.join(argv)}`".replace(" `", "`"),
        "",
        f"Machine: {info['cpu']}, {info['cores']}, {info['ram']} RAM. Commit {info['commit']}. "
        f"Python {info['python']}, torch {info['torch']}, MONAI {info['monai']}, CPU only, "
        f"{threads} torch thread(s) on both sides (OMP_NUM_THREADS/MKL_NUM_THREADS). "
        f"Load average (1 min) at the start: {info['load']:.2f}. CPU bfloat16: {info['bf16']}"
        f"{'; mixed precision forced to bfloat16 (MEDSEG_CPU_BF16=force)' if forced else ''}.",
        "",
        "| case | medseg float32 s | medseg mixed s (ran as) | monai s | time ratio float32 | "
        "time ratio mixed | medseg peak MiB | monai peak MiB | memory ratio | "
        "float32 labels agree with monai | mixed agree with float32 | our affine vs input (mm) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        b, p, c = r["best"], r["peak"], r["check"]
        lines.append(
            f"| {r['case']} | {b['medseg']:.1f} | {b['medseg_amp']:.1f} ({c['amp_precision']}) | "
            f"{b['monai']:.1f} | {b['medseg'] / b['monai']:.2f} | "
            f"{b['medseg_amp'] / b['monai']:.2f} | {p['medseg']:.0f} | {p['monai']:.0f} | "
            f"{p['medseg'] / p['monai']:.2f} | {100 * c['agree']:.2f} % ({c['labels']} labels) | "
            f"{100 * c['amp_agree']:.2f} % | {c['affine_mm']:.1e} |"
        )
    lines += ["", "Commands (per case; paths under bench/_data/segment/):", ""]
    for r in results:
        for side, cmd in r["commands"].items():
            short = shlex.join(cmd).replace(str(REPO) + "/", "")
            lines.append(f"- {r['case']} {side}: `{short}`")
    lines.append("")
    lines.append(
        "Goals: time ratio <= 0.5 and memory ratio <= 0.5 (ours / monai); mixed-precision "
        "labels agree with float32 on >= 99.5 % of voxels."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cases",
        nargs="+",
        default=list(DEFAULT_CASES),
        help=f"bundle:input pairs (bundles: {', '.join(BUNDLES)}; inputs: {', '.join(INPUTS)})",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--rounds", type=int, default=1, help="runs per side (best time kept)")
    parser.add_argument("--write-results", action="store_true", help="append to RESULTS.md")
    parser.add_argument(
        "--force-bf16",
        action="store_true",
        help="mixed-precision run in bfloat16 even where the CPU emulates it "
        "(MEDSEG_CPU_BF16=force)",
    )
    args = parser.parse_args(argv)
    info = machine()
    print(f"CPU bfloat16: {info['bf16']}", file=sys.stderr)
    mode = "force" if args.force_bf16 else "auto"
    results = []
    for case in args.cases:
        print(f"{case} ...", file=sys.stderr)
        results.append(run_case(case, args.threads, args.rounds, mode))
        (DATA / "last_results.json").write_text(json.dumps(results, indent=1, default=str))
    text = report(
        results, info, args.threads, sys.argv[1:] if argv is None else argv, args.force_bf16
    )
    print(text)
    if args.write_results:
        from _results import append_text

        append_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
