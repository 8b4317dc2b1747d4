"""Time and peak memory of each real pretrained model of the catalogue on its sample.

Each run is ``medseg segment`` in a fresh child process (peak RSS = its ``ru_maxrss``),
on the bundled samples: ``lungs-ct`` on the chest CT, the brain models on the T1 brain
MR. Where the authors' own pipeline runs here, it runs in the same invocation on the same
file and the ratio is reported: ``brain-mask`` against deepbet's ``BrainExtraction.run``
(``deepbet`` installed). brainchop's own Python package downloads its models at run time
(not possible here) and UNet-Small's ``predict.py`` needs its dataset layout, so those
models have no peer row.

    python bench/bench_pretrained.py [--models lungs-ct brain-mask ...] [--write-results]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dicom_load import machine_info  # noqa: E402

MODELS = {
    "lungs-ct": "chest_ct",
    "brain-mask": "brain_t1",
    "brain-tissue": "brain_t1",
    "skull-strip": "brain_t1",
    "brain-structures": "brain_t1",
    "brain-regions": "brain_t1",
}

OURS = """
import json, resource, sys, time
started = time.perf_counter()
from napari_medseg.cli import main
rc = main(["segment", sys.argv[1], "--model", sys.argv[2], "-o", sys.argv[3], "--json"])
print("BENCH", json.dumps({"seconds": time.perf_counter() - started,
      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
sys.exit(rc)
"""

DEEPBET = """
import json, resource, sys, time
started = time.perf_counter()
from deepbet.bet import BrainExtraction
BrainExtraction(no_gpu=True).run(sys.argv[1], mask_path=sys.argv[2])
print("BENCH", json.dumps({"seconds": time.perf_counter() - started,
      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(code: str, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    line = next(x for x in result.stdout.splitlines() if x.startswith("BENCH "))
    return json.loads(line[len("BENCH ") :])


def main(argv: list[str] | None = None) -> int:
    from napari_medseg.samples import sample_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    info = machine_info()
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for model in args.models:
            scan = str(sample_path(MODELS[model]))
            ours = run_child(OURS, scan, model, str(Path(work) / f"{model}.nii.gz"))
            peer = None
            if model == "brain-mask":
                peer = run_child(DEEPBET, scan, str(Path(work) / "deepbet_mask.nii.gz"))
            rows.append((model, MODELS[model], ours, peer))
            print(model, ours, peer, flush=True)
    lines = [
        "`python bench/bench_pretrained.py " + " ".join(argv or sys.argv[1:]) + "`",
        "",
        f"Machine: {info['cpu']}, {info['cores']}, {info['ram']} RAM. Commit {info['commit']}. "
        f"CPU only. Load average (1 min) before/after: {load_before:.2f} / "
        f"{os.getloadavg()[0]:.2f}. Each run: a fresh process (imports, model load, read, "
        "segment, write), peak = its ru_maxrss.",
        "",
        "| model | sample | ours s | ours peak MiB | peer | peer s | peer peak MiB "
        "| time ratio ours/peer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, sample, ours, peer in rows:
        if peer:
            ratio = ours["seconds"] / peer["seconds"]
            lines.append(
                f"| {model} | {sample} | {ours['seconds']:.1f} | {ours['peak_mib']:.0f} | "
                f"deepbet BrainExtraction.run | {peer['seconds']:.1f} | {peer['peak_mib']:.0f} | "
                f"{ratio:.2f} |"
            )
        else:
            lines.append(
                f"| {model} | {sample} | {ours['seconds']:.1f} | {ours['peak_mib']:.0f} | "
                "(authors' pipeline does not run here) | | | |"
            )
    text = "\n".join(lines)
    print(text)
    if args.write_results:
        from _results import append_section

        append_section("Real pretrained models on their samples", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
