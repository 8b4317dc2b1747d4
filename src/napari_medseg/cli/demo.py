"""``medseg demo`` and ``medseg view``: the main job on the bundled sample.

``medseg view [PATH]`` and ``medseg demo`` with a display open napari with the scan
and the plugin's widgets (:func:`napari_medseg._napari.launch.launch_viewer`).
Without a display (or with ``--headless``) the demo runs headless: it reads the
sample chest CT from its NIfTI file and from its JPEG 2000 DICOM series, checks that
both give the same voxels on the same patient grid, converts the DICOM series to
NIfTI, segments the lungs with the real pretrained ``lungs-ct`` network, saves the label
map on the scan's grid (NIfTI with a names sidecar, and a DICOM SEG that references the
DICOM series), measures it (volumes, HU statistics, lesions) into a CSV report, prints
that report, and measures the bundled tumour contour. Then it segments the bundled T1
brain MR (Colin27) with ``brain-structures`` (brainchop's MeshNet: 17 structures), saves
and measures that too.

Both are research models with their licence and intended use in
``models/default/MODEL_CARD_PRETRAINED.md``; the demo shows the pipeline, not a clinical
result.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path


def run_headless_demo(out_dir: Path, echo=print) -> dict:
    """Run the headless demo and report what it did.

    Parameters
    ----------
    out_dir : pathlib.Path
        Folder for the outputs (created if missing; existing files are not replaced).
    echo : callable
        Receives each line of the report (``print`` by default).

    Returns
    -------
    dict
        ``max_affine_difference_mm``, ``voxels_identical``, ``tumour_volume_ml``,
        ``tumour_mean_hu`` and ``outputs`` (list of written paths).
    """
    import numpy as np

    from napari_medseg.io.nifti import write_nifti_like
    from napari_medseg.io.reader import read_scan
    from napari_medseg.samples import sample_path

    nifti_path = sample_path("chest_ct")
    dicom_path = sample_path("chest_ct_dicom")
    echo(f"Reading the sample CT from NIfTI: {nifti_path}")
    from_nifti = read_scan(nifti_path)
    echo(f"Reading the sample CT from DICOM: {dicom_path}")
    from_dicom = read_scan(dicom_path)
    for name, volume in (("NIfTI", from_nifti), ("DICOM", from_dicom)):
        spacing = " x ".join(f"{s:.3f}" for s in volume.spacing)
        echo(
            f"  {name}: {' x '.join(map(str, volume.shape))} voxels, {spacing} mm, "
            f"orientation {volume.orientation}, {volume.array.dtype}, "
            f"{volume.array.min()} .. {volume.array.max()} {volume.metadata.units}"
        )
        for warning in volume.metadata.warnings:
            echo(f"  {name} warning: {warning}")
    affine_difference = float(np.abs(from_nifti.affine - from_dicom.affine).max())
    identical = from_nifti.shape == from_dicom.shape and bool(
        np.array_equal(from_nifti.array, from_dicom.array)
    )
    echo(f"  same voxels: {identical}; largest affine difference: {affine_difference:.2e} mm")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    converted = out_dir / "chest_ct_from_dicom.nii.gz"
    outputs = []
    if converted.exists():
        echo(f"  {converted} exists; left as it is")
    else:
        write_nifti_like(
            converted,
            from_dicom.array,
            from_dicom.affine,
            from_dicom,
            description=from_dicom.metadata.series_description,
        )
        outputs.append(str(converted))
        echo(f"Converted the DICOM series to {converted}")

    outputs += _segment_measure_save(from_nifti, from_dicom, out_dir, echo)
    outputs += _segment_brain(out_dir, echo)

    tumour = read_scan(sample_path("chest_ct_tumour"))
    mask = tumour.array > 0
    voxel_ml = abs(float(np.linalg.det(tumour.affine[:3, :3]))) / 1000.0
    volume_ml = float(mask.sum()) * voxel_ml
    mean_hu = float(from_nifti.array[mask].mean()) if mask.any() else float("nan")
    echo(f"Tumour contour: {int(mask.sum())} voxels, {volume_ml:.2f} mL, mean {mean_hu:.1f} HU")
    return {
        "max_affine_difference_mm": affine_difference,
        "voxels_identical": identical,
        "tumour_volume_ml": volume_ml,
        "tumour_mean_hu": mean_hu,
        "outputs": outputs,
    }


#: Output names of the segmentation part of the demo, in ``out_dir``.
SEGMENTATION_NAME = "chest_ct_segmentation.nii.gz"
DICOM_SEG_NAME = "chest_ct_segmentation_seg.dcm"
REPORT_NAME = "chest_ct_report.csv"
BRAIN_SEGMENTATION_NAME = "brain_t1_structures.nii.gz"
BRAIN_REPORT_NAME = "brain_t1_report.csv"

#: The catalogue models the demo runs: real anatomy on both samples.
DEMO_CT_MODEL = "lungs-ct"
DEMO_BRAIN_MODEL = "brain-structures"


def _segment_measure_save(scan, dicom_scan, out_dir: Path, echo) -> list[str]:
    """Segment the chest CT's lungs with :data:`DEMO_CT_MODEL`, save (NIfTI + DICOM SEG
    referencing the series) and measure it; return the written paths."""
    return _segment_one(
        scan,
        DEMO_CT_MODEL,
        out_dir / SEGMENTATION_NAME,
        out_dir / REPORT_NAME,
        echo,
        dicom_scan=dicom_scan,
        seg_path=out_dir / DICOM_SEG_NAME,
        lesions=True,
    )


def _segment_brain(out_dir: Path, echo) -> list[str]:
    """Segment the brain MR sample with :data:`DEMO_BRAIN_MODEL`, save and measure it."""
    from napari_medseg.io.reader import read_scan
    from napari_medseg.samples import sample_path

    path = sample_path("brain_t1")
    echo(f"Reading the sample T1 brain MR: {path}")
    scan = read_scan(path)
    return _segment_one(
        scan, DEMO_BRAIN_MODEL, out_dir / BRAIN_SEGMENTATION_NAME, out_dir / BRAIN_REPORT_NAME, echo
    )


def _segment_one(
    scan,
    model: str,
    labels_path: Path,
    report_path: Path,
    echo,
    dicom_scan=None,
    seg_path: Path | None = None,
    lesions: bool = False,
) -> list[str]:
    """Segment ``scan`` with a catalogue model, save and measure it; return written paths.

    Existing outputs are read and kept, never replaced.
    """
    from napari_medseg.io.label_names import read_label_names
    from napari_medseg.io.reader import read_scan
    from napari_medseg.io.save import SaveTargets, save_segmentation
    from napari_medseg.io.sidecar import read_sidecar_model, sidecar_path
    from napari_medseg.labels.classes import classes_from_label_classes
    from napari_medseg.measure.report import build_report, write_report
    from napari_medseg.measure.text import report_table
    from napari_medseg.volume import Volume

    written: list[str] = []
    protect = [scan.metadata.source]
    if dicom_scan is not None:
        protect += [dicom_scan.metadata.source, *dicom_scan.metadata.files]
    if labels_path.exists():
        echo(f"  {labels_path} exists; left as it is (measuring it)")
    else:
        from napari_medseg.inference.segmenter import Segmenter

        segmenter = Segmenter(model, device="auto")
        spec = segmenter.model.spec
        echo(f"Segmenting with {model!r} ({spec.title}) on {segmenter.device}")
        licence = segmenter.licence()
        echo(f"  licence {licence['license']}; intended use: {licence['intended_use']}")
        for warning in segmenter.advance_warnings(scan):
            echo(f"  warning: {warning}")
        result = segmenter.predict(scan)
        echo(f"  {result.timings_s['total']:.1f} s (network {result.timings_s['network']:.1f} s)")
        wants_seg = seg_path is not None and not seg_path.exists()
        targets = SaveTargets(labels_path, dicom_seg=seg_path if wants_seg else None)
        written += [
            str(path)
            for path in save_segmentation(
                Volume(result.labels, result.affine, scan.metadata),
                targets,
                classes_from_label_classes(result.label_classes),
                model=result.provenance(),
                protect=protect,
                # only missing outputs are named (an existing SEG is left out above); a
                # sidecar left behind without its labels is stale and replaced
                overwrite=True,
                dicom_files=dicom_scan.metadata.files if dicom_scan is not None else None,
            )
        ]
        echo(f"Saved the label map on the scan's grid: {labels_path}")
        if targets.dicom_seg is not None:
            echo(f"Saved a DICOM SEG that references the DICOM series: {seg_path}")
    # what is measured is the file as saved, with its sidecar's names
    labels = read_scan(labels_path)
    sidecar = sidecar_path(labels_path)
    names = read_label_names(sidecar) if sidecar.is_file() else None
    provenance = read_sidecar_model(sidecar)
    report = build_report(labels, scan, names=names, lesions=lesions, model=provenance)
    if report_path.exists():
        echo(f"  {report_path} exists; left as it is")
    else:
        written += [str(p) for p in write_report(report, report_path, protect=protect)]
        echo(f"Wrote the report: {report_path}")
    for line in report_table(report):
        echo(f"  {line}")
    return written


def open_in_napari(path: str | Path | None, linked_views: bool = True) -> None:
    """Open napari with ``path`` (default: the sample) and the plugin's widgets; blocks.

    ``linked_views``: axial, coronal and sagittal views with a crosshair (False: napari's
    single view; the Views dock switches either way later).
    """
    from napari_medseg._napari.launch import launch_viewer

    launch_viewer(path, linked_views=linked_views)


def gui_unavailable_reason(timeout_s: float = 60.0) -> str:
    """Why napari cannot open here ("" when it can).

    On Linux a display variable is not enough (it may point at a closed X server), so
    a Qt application is started in a child process as a probe.
    """
    if sys.platform not in ("darwin", "win32") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display found (DISPLAY is not set)"
    probe = "from qtpy.QtWidgets import QApplication; QApplication([])"
    try:
        result = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return f"the display did not answer within {timeout_s:.0f} s"
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["Qt could not start"])[-1]
        return f"napari cannot open a window here ({last_line})"
    return ""


def cmd_view(args: argparse.Namespace) -> int:
    """``medseg view [PATH]``: open napari with a scan (default: the sample) and the widgets."""
    open_in_napari(args.path, linked_views=not args.single_view)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``medseg demo``: the main job on the bundled sample, in napari or headless."""
    reason = "" if args.headless else gui_unavailable_reason()
    if args.headless or reason:
        if reason:
            print(f"{reason}: running the headless demo.", flush=True)
        run_headless_demo(Path(args.out))
        return 0
    open_in_napari(None, linked_views=not args.single_view)
    return 0


_SINGLE_VIEW_HELP = (
    "open napari's single view instead of linked axial, coronal and sagittal views "
    "(the Views dock switches later)"
)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``view`` and ``demo`` to the ``medseg`` sub-commands."""
    view = commands.add_parser("view", help="open napari with a scan and the plugin's widgets")
    view.add_argument("path", nargs="?", help="scan to open (default: the bundled sample)")
    view.add_argument("--single-view", action="store_true", help=_SINGLE_VIEW_HELP)
    view.set_defaults(func=cmd_view)

    demo = commands.add_parser(
        "demo", help="the main job on the bundled sample (napari, or headless without a display)"
    )
    demo.add_argument("--headless", action="store_true", help="do not open napari")
    demo.add_argument("--single-view", action="store_true", help=_SINGLE_VIEW_HELP)
    demo.add_argument(
        "--out", default="medseg-demo-output", help="folder for the headless demo's outputs"
    )
    demo.set_defaults(func=cmd_demo)
