"""Fingerprints of what ``medseg`` writes on the bundled samples, to prove a refactor
changed no output.

Runs, into a fresh folder:

* ``medseg convert`` of the DICOM sample;
* ``medseg segment`` of the NIfTI sample (labels, sidecar, probabilities) and of the
  DICOM sample (labels, sidecar, DICOM SEG);
* ``medseg report`` of the segmented NIfTI against the scan and the tumour contour, as
  CSV with lesions and as JSON;
* ``medseg demo --headless``.

Then prints one line per written file: its name and the SHA-256 of its content with
what legitimately changes from run to run taken out:

* NIfTI: the uncompressed bytes (a ``.nii.gz`` stores its write time in the gzip header);
* JSON: with ``created_utc``, ``timings_s`` and full paths removed;
* DICOM: every data element, with generated UIDs replaced by their order of first
  appearance and dates/times blanked (highdicom stamps both at write time);
* anything else: the bytes.

Usage::

    python scripts/output_fingerprints.py OUT_DIR > fingerprints.txt
    # change the code, then
    python scripts/output_fingerprints.py OUT_DIR2 > after.txt && diff fingerprints.txt after.txt
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_scans"
#: JSON keys whose values change from run to run (times, durations, absolute paths)
VOLATILE_KEYS = {"created_utc", "timings_s", "timings"}


def run(*args: str, cwd: Path) -> None:
    command = [str(Path(sys.executable).parent / "medseg"), *args]  # the console script
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr}")


def _json_clean(value, root: str):
    if isinstance(value, dict):
        return {k: _json_clean(v, root) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_json_clean(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<OUT>")
    return value


def _dicom_digest(path: Path, source_uids: set[str]) -> str:
    import pydicom

    dataset = pydicom.dcmread(path)
    renamed: dict[str, str] = {}
    lines: list[str] = []

    def walk(ds, depth: int) -> None:
        for element in ds:
            if element.VR == "SQ":
                lines.append(f"{depth} {element.tag} SQ {len(element.value)}")
                for item in element.value:
                    walk(item, depth + 1)
                continue
            value = element.value
            if element.VR == "UI" and isinstance(value, str) and value not in source_uids:
                if not value.startswith("1.2.840.10008."):  # DICOM's own (SOP classes, syntaxes)
                    value = renamed.setdefault(value, f"<uid {len(renamed)}>")
            elif element.VR in ("DA", "TM", "DT"):
                value = "<time>"
            elif isinstance(value, bytes):
                value = hashlib.sha256(value).hexdigest()
            lines.append(f"{depth} {element.tag} {element.VR} {value!r}")

    walk(dataset.file_meta, 0)
    walk(dataset, 0)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _source_uids() -> set[str]:
    import pydicom

    uids: set[str] = set()
    for file in sorted((SAMPLES / "chest_ct_dicom").iterdir()):
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        for element in ds.iterall():
            if element.VR == "UI" and isinstance(element.value, str):
                uids.add(element.value)
    return uids


def digest(path: Path, root: Path, source_uids: set[str]) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        return hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
    if name.endswith(".json"):
        data = _json_clean(json.loads(path.read_text()), str(root))
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    if name.endswith(".dcm"):
        return _dicom_digest(path, source_uids)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(out: Path) -> None:
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out}: not empty; give a new folder")
    out.mkdir(parents=True, exist_ok=True)
    nifti = str(SAMPLES / "chest_ct.nii.gz")
    dicom = str(SAMPLES / "chest_ct_dicom")
    tumour = str(SAMPLES / "chest_ct_tumour.nii.gz")
    run("convert", dicom, "converted.nii.gz", cwd=out)
    run("segment", nifti, "-o", "seg.nii.gz", "--probabilities", "probs.nii.gz", cwd=out)
    run("segment", dicom, "-o", "seg_dicom.nii.gz", "--dicom-seg", "seg_dicom.dcm", cwd=out)
    run("report", "seg.nii.gz", "--image", nifti, "--reference", tumour, "--lesions",
        "-o", "report.csv", cwd=out)  # fmt: skip
    run("report", "seg.nii.gz", "--image", dicom, "--reference", tumour, "--lesions",
        "-o", "report.json", cwd=out)  # fmt: skip
    run("report", tumour, "--image", nifti, "-o", "tumour.csv", cwd=out)
    run("demo", "--headless", "--out", "demo", cwd=out)
    uids = _source_uids()
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        print(f"{path.relative_to(out)}  {digest(path, out, uids)}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main(Path(sys.argv[1]))
