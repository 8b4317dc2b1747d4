#!/usr/bin/env python
"""Regenerate ``sample_scans/`` from the ``lung1`` case of pyradiomics-bhklab 3.1.4.

Usage::

    python scripts/make_sample_scans.py                 # downloads the sdist with pip
    python scripts/make_sample_scans.py --source DIR    # DIR: unpacked sdist, its data/
                                                        # folder, or the .tar.gz itself
    python scripts/make_sample_scans.py --verify-only   # check the committed files

What it makes (see ``sample_scans/README.md``):

* ``chest_ct.nii.gz``          int16 HU, lung1 cropped and averaged 2x2 in-plane
* ``chest_ct_tumour.nii.gz``   uint8 labels on the same grid (1 = tumour)
* ``chest_ct_dicom/``          the same CT as a DICOM series, JPEG 2000 Lossless
* ``LICENSE-pyradiomics.txt``  the sdist's LICENSE.txt, verbatim

The run is reproducible: the NRRD inputs are checked against known SHA-256 sums, the
DICOM UIDs are derived from fixed strings, the dates are fixed, and the NIfTI files
are gzipped with ``mtime=0`` and no file name in the gzip header. Running it twice
gives the same bytes (the script prints SHA-256 sums to compare).

The NRRDs are read with SimpleITK (it keeps the files' origin, spacing and
direction; ITK's physical space is DICOM LPS+, turned into RAS+ for NIfTI).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "sample_scans"

SDIST = "pyradiomics-bhklab==3.1.4"
SDIST_DIR = "pyradiomics_bhklab-3.1.4"
#: SHA-256 of pyradiomics_bhklab-3.1.4.tar.gz as served by PyPI.
SDIST_SHA256 = "a44a087efc4ede91b5dfa5cf0de58ea3596bfaec1ef2484f278504b0a8fd5ffb"
#: SHA-256 of the inputs inside the sdist, so a different download cannot slip in.
INPUT_SHA256 = {
    "data/lung1_image.nrrd": "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed",
    "data/lung1_label.nrrd": "e9d9a88054d7bc1d3034193ff907ce6b8c6ba28a7bc3a16f23728982d1b6b50a",
}
LICENSE_MEMBER = "LICENSE.txt"

#: Crop of the source grid, in NRRD/ITK index order (x = column, y = row, z = slice),
#: half-open. Keeps the full width (shoulders), drops the air and ECG leads above the
#: chest wall; all 48 slices (upper abdomen to neck). The tumour (x 206-229,
#: y 347-372, z 32-34) is well inside.
CROP = ((0, 512), (112, 512), (0, 48))
#: In-plane block-averaging factor (x, y); slices are kept as they are.
SHRINK = (2, 2, 1)

#: Deterministic DICOM identifiers and dates (no patient, no real date).
UID_SEED = "napari-medseg sample_scans chest_ct lung1 pyradiomics-bhklab 3.1.4"
STUDY_UID = generate_uid(entropy_srcs=[UID_SEED, "study"])
SERIES_UID = generate_uid(entropy_srcs=[UID_SEED, "series"])
FRAME_UID = generate_uid(entropy_srcs=[UID_SEED, "frame-of-reference"])
SERIES_DESCRIPTION = "Chest CT lung1 (pyradiomics-bhklab) 2x2 in-plane"
#: Lung window (center, width) in HU.
WINDOW = (-600.0, 1500.0)
DATE = "20000101"
TIME = "120000"

NIFTI_DESCRIP = b"napari-medseg sample: lung1 chest CT (HU)"
LABEL_DESCRIP = b"napari-medseg sample: lung1 tumour (1)"


# --------------------------------------------------------------------------- input


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _extract_sdist(tar_path: Path, dest: Path) -> Path:
    """Extract only the needed members of the sdist (no path traversal possible)."""
    wanted = {f"{SDIST_DIR}/{m}" for m in (*INPUT_SHA256, LICENSE_MEMBER)}
    with tarfile.open(tar_path, "r:gz") as tar:
        for member in tar.getmembers():
            if member.name not in wanted:
                continue
            if not member.isfile():
                raise RuntimeError(f"{tar_path}: {member.name} is not a regular file")
            target = dest / member.name
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            assert src is not None
            with open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    return dest / SDIST_DIR


def _download_sdist(dest: Path) -> Path:
    """``pip download`` the sdist into ``dest`` and return the .tar.gz path."""
    # pyradiomics-bhklab 3.1.4 is published as an sdist only; pip prepares its
    # metadata (with wheels of its build requirements) but installs nothing.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", SDIST, "-d", str(dest)]
    print("running:", " ".join(cmd))
    subprocess.run(cmd, check=True)
    tars = sorted(dest.glob("pyradiomics_bhklab-3.1.4*.tar.gz"))
    if not tars:
        raise RuntimeError(f"pip download left no sdist in {dest}")
    got = _sha256(tars[0])
    if got != SDIST_SHA256:
        raise SystemExit(f"{tars[0]}: SHA-256 {got} != expected {SDIST_SHA256}")
    return tars[0]


def locate_source(source: Path | None, workdir: Path) -> Path:
    """Return the unpacked sdist root that holds ``data/lung1_*.nrrd`` and LICENSE.txt."""
    if source is None:
        source = _download_sdist(workdir / "download")
    source = source.resolve()
    if source.is_file() and source.name.endswith(".tar.gz"):
        root = _extract_sdist(source, workdir / "unpacked")
    elif (source / "data" / "lung1_image.nrrd").is_file():
        root = source
    elif (source / "lung1_image.nrrd").is_file():  # the data/ folder itself
        root = source.parent
    elif (source / SDIST_DIR / "data" / "lung1_image.nrrd").is_file():
        root = source / SDIST_DIR
    else:
        tars = sorted(source.glob("pyradiomics_bhklab-3.1.4*.tar.gz"))
        if not tars:
            raise SystemExit(
                f"{source}: no data/lung1_image.nrrd and no pyradiomics_bhklab-3.1.4 sdist; "
                "pass the unpacked sdist folder, or omit --source to download it with pip"
            )
        root = _extract_sdist(tars[0], workdir / "unpacked")
    for member, digest in INPUT_SHA256.items():
        got = _sha256(root / member)
        if got != digest:
            raise SystemExit(f"{root / member}: SHA-256 {got} != expected {digest}")
    if not (root / LICENSE_MEMBER).is_file():
        raise SystemExit(f"{root}: no {LICENSE_MEMBER}")
    return root


# ------------------------------------------------------------------ geometry helpers


def itk_affine_lps(img: sitk.Image) -> np.ndarray:
    """4x4 voxel index (x, y, z) -> LPS+ mm matrix of a SimpleITK image."""
    direction = np.array(img.GetDirection(), dtype=float).reshape(3, 3)
    aff = np.eye(4)
    aff[:3, :3] = direction * np.array(img.GetSpacing(), dtype=float)
    aff[:3, 3] = img.GetOrigin()
    return aff


LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def itk_affine_ras(img: sitk.Image) -> np.ndarray:
    """4x4 voxel index (x, y, z) -> RAS+ mm matrix (nibabel's convention)."""
    return LPS_TO_RAS @ itk_affine_lps(img)


def crop_and_shrink(
    arr_xyz: np.ndarray, affine_ras: np.ndarray, *, average: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Crop with :data:`CROP` and shrink by :data:`SHRINK`.

    Parameters
    ----------
    arr_xyz : numpy.ndarray
        Source voxels, shape (X, Y, Z) in ITK index order.
    affine_ras : numpy.ndarray
        4x4 voxel -> RAS+ mm of ``arr_xyz``.
    average : bool
        True: block mean rounded half up to the nearest integer (CT, HU).
        False: a label voxel is set where at least half of its block is set.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The new array (X', Y', Z') and its 4x4 voxel -> RAS+ affine. A new voxel's
        centre is the centroid of the source voxel centres it averages.
    """
    (x0, x1), (y0, y1), (z0, z1) = CROP
    fx, fy, fz = SHRINK
    sub = arr_xyz[x0:x1, y0:y1, z0:z1]
    nx, ny, nz = (s // f for s, f in zip(sub.shape, SHRINK, strict=True))
    sub = sub[: nx * fx, : ny * fy, : nz * fz]
    blocks = sub.reshape(nx, fx, ny, fy, nz, fz).astype(np.int64)
    total = blocks.sum(axis=(1, 3, 5))
    n = fx * fy * fz
    if average:
        out = np.floor_divide(2 * total + n, 2 * n)  # round half up
        out = out.astype(arr_xyz.dtype)
    else:
        out = (2 * total >= n).astype(np.uint8)
    new = affine_ras.copy()
    # first new voxel sits at the centroid of source voxels x0..x0+fx-1 (etc.)
    start = np.array([x0 + (fx - 1) / 2, y0 + (fy - 1) / 2, z0 + (fz - 1) / 2, 1.0])
    new[:3, 3] = (affine_ras @ start)[:3]
    new[:3, :3] = affine_ras[:3, :3] * np.array([fx, fy, fz], dtype=float)
    return out, new


# ------------------------------------------------------------------------- writing


def nifti_bytes(
    arr: np.ndarray,
    affine: np.ndarray,
    descrip: bytes,
    window: tuple[float, float] | None = None,
) -> bytes:
    """A deterministic .nii.gz: nibabel header, gzip with mtime 0 and no file name.

    ``window`` (center, width) goes into ``cal_min``/``cal_max``, NIfTI's display
    range, so the NIfTI opens in the same window as the DICOM series.
    """
    img = nib.Nifti1Image(np.asarray(arr), affine)
    hdr = img.header
    hdr.set_data_dtype(arr.dtype)
    hdr.set_xyzt_units("mm", "sec")
    hdr["descrip"] = descrip
    if window is not None:
        center, width = window
        hdr["cal_min"], hdr["cal_max"] = center - width / 2.0, center + width / 2.0
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    raw = img.to_bytes()
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    return buf.getvalue()


def write_dicom(hu: np.ndarray, affine: np.ndarray, folder: Path) -> list[Path]:
    """Write the CT as a JPEG 2000 Lossless series (RLE Lossless if that fails).

    Stored values are ``HU + 1024`` with ``RescaleIntercept = -1024`` (as most CT
    scanners write them), so a reader must apply the modality LUT to get HU back.
    """
    from pydicom.uid import JPEG2000Lossless, RLELossless

    from napari_medseg.synthetic.dicom_series import write_dicom_series

    stored = (hu.astype(np.int32) + 1024).astype(np.int16)
    kwargs = dict(
        modality="CT",
        series_uid=SERIES_UID,
        study_uid=STUDY_UID,
        frame_of_reference_uid=FRAME_UID,
        series_description=SERIES_DESCRIPTION,
        series_number=1,
        rescale_slope=1.0,
        rescale_intercept=-1024.0,
        window=WINDOW,
        patient_name="Anonymous^Sample",
        patient_id="MEDSEG-SAMPLE-0001",
        # fixed dates/times (the writer would stamp "now"), anonymous demographics
        extra={
            "StudyDate": DATE,
            "SeriesDate": DATE,
            "ContentDate": DATE,
            "AcquisitionDate": DATE,
            "StudyTime": TIME,
            "SeriesTime": TIME,
            "ContentTime": TIME,
            "AcquisitionTime": TIME,
            "StudyDescription": "napari-medseg sample chest CT",
            "BodyPartExamined": "CHEST",
            "PatientIdentityRemoved": "YES",
            "DeidentificationMethod": "synthetic IDs and dates; source NRRD has none",
        },
    )
    for ts in (JPEG2000Lossless, RLELossless):
        if folder.exists():
            shutil.rmtree(folder)
        try:
            return write_dicom_series(stored, affine, folder, transfer_syntax=ts, **kwargs)
        except ValueError as exc:  # no encoder installed: fall back, and say so
            print(f"{ts.name} failed ({exc}); trying the next transfer syntax")
    raise SystemExit("could not write the DICOM series with JPEG 2000 nor RLE Lossless")


# ---------------------------------------------------------------------- verifying


def verify(out: Path, source_root: Path | None) -> bool:
    """Check the written files; print what was checked. Returns True when all pass."""
    ok = True

    def check(cond: bool, what: str) -> None:
        nonlocal ok
        ok &= bool(cond)
        print(f"  [{'ok' if cond else 'FAIL'}] {what}")

    ct_path, lab_path = out / "chest_ct.nii.gz", out / "chest_ct_tumour.nii.gz"
    ct, lab = nib.load(ct_path), nib.load(lab_path)
    ct_arr, lab_arr = np.asarray(ct.dataobj), np.asarray(lab.dataobj)
    print(
        f"chest_ct.nii.gz: shape {ct_arr.shape} {ct_arr.dtype}, "
        f"zooms {tuple(round(float(z), 6) for z in ct.header.get_zooms())} mm, "
        f"axcodes {''.join(nib.aff2axcodes(ct.affine))}"
    )
    check(ct_arr.dtype == np.int16, "CT is int16")
    check(lab_arr.dtype == np.uint8, "labels are uint8")
    check(set(np.unique(lab_arr).tolist()) <= {0, 1}, "labels are {0, 1}")
    check(
        np.array_equal(ct.affine, lab.affine) and ct_arr.shape == lab_arr.shape,
        "labels on the CT's grid",
    )
    check(
        int(ct.header["qform_code"]) == 1 and int(ct.header["sform_code"]) == 1,
        "qform/sform codes 1 (scanner)",
    )

    # SimpleITK reads the same geometry as nibabel
    s_ct = sitk.ReadImage(str(ct_path))
    check(
        np.allclose(itk_affine_ras(s_ct), ct.affine, atol=1e-4),
        "SimpleITK and nibabel agree on the NIfTI affine (1e-4 mm)",
    )
    check(
        np.array_equal(sitk.GetArrayViewFromImage(s_ct).T, ct_arr),
        "SimpleITK and nibabel read the same voxels",
    )

    if source_root is not None:
        # Independent reference: SimpleITK's own crop + BinShrink of the NRRD.
        src = sitk.ReadImage(str(source_root / "data/lung1_image.nrrd"))
        (x0, x1), (y0, y1), (z0, z1) = CROP
        ref = sitk.BinShrink(sitk.Cast(src[x0:x1, y0:y1, z0:z1], sitk.sitkFloat64), list(SHRINK))
        check(
            np.allclose(ref.GetOrigin(), s_ct.GetOrigin(), atol=1e-4)
            and np.allclose(ref.GetSpacing(), s_ct.GetSpacing(), atol=1e-6)
            and np.allclose(ref.GetDirection(), s_ct.GetDirection(), atol=1e-6),
            "NIfTI geometry == SimpleITK crop+BinShrink of the NRRD (origin 1e-4 mm)",
        )
        ref_vals = np.floor(sitk.GetArrayViewFromImage(ref).T + 0.5).astype(np.int16)
        check(
            np.array_equal(ref_vals, ct_arr),
            "NIfTI voxels == rounded SimpleITK BinShrink means of the NRRD",
        )
        print(
            f"  NRRD crop origin (LPS) {tuple(round(v, 4) for v in ref.GetOrigin())}, "
            f"spacing {tuple(round(v, 6) for v in ref.GetSpacing())}"
        )
        # keep the Image alive: an array *view* of a temporary image reads freed memory
        src_lab_img = sitk.ReadImage(str(source_root / "data/lung1_label.nrrd"))
        src_lab = sitk.GetArrayFromImage(src_lab_img)
        src_vox = float(np.prod(src.GetSpacing())) / 1000.0
        n_src = int((src_lab == 1).sum())
        print(
            f"  source tumour: {n_src} voxels = {n_src * src_vox:.3f} mL "
            "(full-resolution NRRD grid)"
        )

    vox_ml = float(abs(np.linalg.det(ct.affine[:3, :3]))) / 1000.0
    n_tum = int((lab_arr == 1).sum())
    mean_hu = float(ct_arr[lab_arr == 1].mean()) if n_tum else float("nan")
    print(
        f"  sample tumour: {n_tum} voxels = {n_tum * vox_ml:.3f} mL; "
        f"mean HU inside {mean_hu:.1f}, outside {float(ct_arr[lab_arr == 0].mean()):.1f}"
    )
    check(n_tum > 0 and mean_hu > -300, "tumour overlaps bright voxels (mean HU > -300)")
    edges = [
        lab_arr[0],
        lab_arr[-1],
        lab_arr[:, 0],
        lab_arr[:, -1],
        lab_arr[:, :, 0],
        lab_arr[:, :, -1],
    ]
    check(not any(e.any() for e in edges), "tumour does not touch the crop border")

    dicom_dir = out / "chest_ct_dicom"
    files = sorted(dicom_dir.glob("*.dcm")) if dicom_dir.is_dir() else []
    check(len(files) == ct_arr.shape[2], f"DICOM series has {len(files)} files")
    if files:
        import pydicom

        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        ts = ds.file_meta.TransferSyntaxUID
        print(
            f"  DICOM transfer syntax {ts} ({ts.name}), SeriesDescription "
            f"{ds.get('SeriesDescription')!r}, window {ds.get('WindowCenter')}/"
            f"{ds.get('WindowWidth')}, PatientName {ds.get('PatientName')!r}"
        )
        check(ts.is_compressed, "DICOM pixel data is compressed")
        # SimpleITK/GDCM decode the series independently of our reader
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(dicom_dir)))
        s_dcm = reader.Execute()
        check(
            np.array_equal(sitk.GetArrayViewFromImage(s_dcm).T, ct_arr),
            "SimpleITK (GDCM) reads the DICOM to the NIfTI's voxels",
        )
        check(
            np.allclose(itk_affine_ras(s_dcm), ct.affine, atol=1e-4),
            "SimpleITK (GDCM) DICOM affine == NIfTI affine (1e-4 mm)",
        )
    if files:
        _check_read_scan(check, dicom_dir, ct_path, ct_arr, ct.affine)

    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"  sample_scans/ total {total / 1e6:.2f} MB")
    check(total < 20e6, "sample_scans/ under 20 MB")
    return ok


def _check_read_scan(check, dicom_dir: Path, ct_path: Path, ct_arr, ct_affine) -> None:
    """Compare the project's own reader with the NIfTI."""
    from napari_medseg.io import read_scan

    vol = read_scan(dicom_dir)
    check(
        vol.array.shape == ct_arr.shape and np.array_equal(vol.array, ct_arr),
        f"read_scan(DICOM) voxels == NIfTI voxels (dtype {vol.array.dtype})",
    )
    err = float(np.abs(vol.affine - ct_affine).max())
    check(err <= 1e-4, f"read_scan(DICOM) affine == NIfTI affine (max diff {err:.1e} mm)")
    check(
        vol.metadata.window is not None and np.allclose(vol.metadata.window, WINDOW),
        f"read_scan(DICOM) window {vol.metadata.window}",
    )
    vol_n = read_scan(ct_path)
    check(
        np.array_equal(vol_n.array, ct_arr) and np.allclose(vol_n.affine, ct_affine, atol=1e-6),
        "read_scan(NIfTI) == nibabel",
    )
    check(
        vol_n.metadata.window is not None and np.allclose(vol_n.metadata.window, WINDOW),
        f"read_scan(NIfTI) window {vol_n.metadata.window} (cal_min/cal_max)",
    )


def print_checksums(out: Path) -> None:
    h = hashlib.sha256()
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name != "README.md":
            h.update(p.relative_to(out).as_posix().encode() + b"\0" + p.read_bytes())
    for name in ("chest_ct.nii.gz", "chest_ct_tumour.nii.gz"):
        if (out / name).is_file():
            print(f"  sha256 {name}: {_sha256(out / name)}")
    print(f"  sha256 of all generated files (excluding README.md): {h.hexdigest()}")


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="unpacked pyradiomics_bhklab-3.1.4 sdist (or its data/ folder, "
        "or the .tar.gz); downloaded with pip when omitted",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--verify-only", action="store_true", help="only check the files already in --out"
    )
    parser.add_argument("--no-dicom", action="store_true", help="skip the DICOM series")
    args = parser.parse_args(argv)
    out: Path = args.out

    with tempfile.TemporaryDirectory(prefix="medseg-samples-") as tmp:
        if args.verify_only:
            root = locate_source(args.source, Path(tmp)) if args.source else None
            ok = verify(out, root)
            print_checksums(out)
            return 0 if ok else 1

        root = locate_source(args.source, Path(tmp))
        print(f"source: {root}")
        img = sitk.ReadImage(str(root / "data/lung1_image.nrrd"))
        lab = sitk.ReadImage(str(root / "data/lung1_label.nrrd"))
        if img.GetSize() != lab.GetSize() or not np.allclose(
            itk_affine_lps(img), itk_affine_lps(lab), atol=1e-6
        ):
            raise SystemExit("lung1 image and label are not on the same grid")
        affine = itk_affine_ras(img)
        # SimpleITK arrays are (z, y, x); nibabel's (I, J, K) is ITK's (x, y, z).
        ct_xyz = sitk.GetArrayFromImage(img).T
        lab_xyz = sitk.GetArrayFromImage(lab).T == 1
        if ct_xyz.dtype != np.int16:
            raise SystemExit(f"expected int16 HU, got {ct_xyz.dtype}")

        ct, ct_aff = crop_and_shrink(ct_xyz, affine, average=True)
        tum, tum_aff = crop_and_shrink(lab_xyz, affine, average=False)
        assert np.array_equal(ct_aff, tum_aff)
        n_src = int(lab_xyz.sum())
        (x0, x1), (y0, y1), (z0, z1) = CROP
        if int(lab_xyz[x0:x1, y0:y1, z0:z1].sum()) != n_src:
            raise SystemExit("the crop cuts the tumour")
        print(
            f"sample grid {ct.shape}, spacing "
            f"{np.sqrt((ct_aff[:3, :3] ** 2).sum(0)).round(6).tolist()} mm"
        )

        out.mkdir(parents=True, exist_ok=True)
        (out / "chest_ct.nii.gz").write_bytes(nifti_bytes(ct, ct_aff, NIFTI_DESCRIP, window=WINDOW))
        (out / "chest_ct_tumour.nii.gz").write_bytes(nifti_bytes(tum, ct_aff, LABEL_DESCRIP))
        shutil.copyfile(root / LICENSE_MEMBER, out / "LICENSE-pyradiomics.txt")
        if not args.no_dicom:
            files = write_dicom(ct, ct_aff, out / "chest_ct_dicom")
            print(f"wrote {len(files)} DICOM files")

        print("verifying:")
        ok = verify(out, root)
        print_checksums(out)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
