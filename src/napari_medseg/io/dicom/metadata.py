"""The :class:`~napari_medseg.volume.ScanMetadata` of an assembled DICOM series.

Pure bookkeeping on header values already indexed (no file access).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from pydicom.uid import UID

from napari_medseg.io.dicom.records import FrameRef, SeriesInfo
from napari_medseg.io.dicom.stack import StackPlan
from napari_medseg.volume import ScanMetadata


def _as_stored(value: int | None, ref: FrameRef) -> int | None:
    """A padding value as the stored pixels read it (US written for signed pixels)."""
    if value is None:
        return None
    bits = ref.bits_allocated
    if ref.pixel_representation == 1 and bits in (8, 16, 32) and value >= 1 << (bits - 1):
        value -= 1 << bits  # the same bits, read as a signed number
    return value


def pixel_padding(
    used: list[FrameRef], luts: list[tuple[float, float]]
) -> tuple[dict[str, Any], list[str]]:
    """PixelPaddingValue / PixelPaddingRangeLimit of a series, for later masking.

    The values are only recorded; the voxel values are never changed.

    Parameters
    ----------
    used : list of FrameRef
        Frames placed in the volume.
    luts : list of (slope, intercept)
        The distinct modality LUTs of those frames.

    Returns
    -------
    (dict, list of str)
        ``extra`` entries and warnings. Entries (all None without padding):
        ``pixel_padding_stored`` ``(value, range_limit or None)`` as stored;
        ``pixel_padding_value`` the padding value in the volume's units
        (modality LUT applied, e.g. HU); ``pixel_padding_range`` ``(low, high)``
        in the volume's units, both ends included (``low == high`` without a
        range limit), so ``(array >= low) & (array <= high)`` masks the padding.
        The two rescaled entries are None when the slices use different LUTs.
    """
    first = used[0]
    value = _as_stored(first.info.get("pixel_padding_value"), first)
    limit = _as_stored(first.info.get("pixel_padding_range_limit"), first)
    extra: dict[str, Any] = {
        "pixel_padding_stored": None,
        "pixel_padding_value": None,
        "pixel_padding_range": None,
    }
    if value is None:
        return extra, []
    extra["pixel_padding_stored"] = (value, limit)
    if len(luts) != 1:
        return extra, [
            f"PixelPaddingValue {value} (stored) is not one value in the volume's units, "
            "as the slices use different rescale slopes/intercepts; see "
            "metadata.extra['pixel_padding_stored']"
        ]
    slope, intercept = luts[0]
    ends = [float(value) * slope + intercept, float(value if limit is None else limit)]
    ends[1] = ends[1] * slope + intercept if limit is not None else ends[0]
    low, high = min(ends), max(ends)
    padding = float(value) * slope + intercept
    if all(float(v).is_integer() for v in (low, high, padding)):
        low, high, padding = int(low), int(high), int(padding)
    extra["pixel_padding_value"] = padding
    extra["pixel_padding_range"] = (low, high)
    return extra, []


def series_metadata(
    series: SeriesInfo,
    slots: list[FrameRef | None],
    luts: list[tuple[float, float]],
    stored: np.dtype,
    plan: StackPlan,
    warnings: list[str],
) -> ScanMetadata:
    """Describe an assembled series: identification, geometry notes, warnings.

    Parameters
    ----------
    series : SeriesInfo
        The series read.
    slots : list of FrameRef or None
        The frame read for each output slice (None for a missing slice).
    luts : list of (slope, intercept)
        The distinct modality LUTs used, sorted.
    stored : numpy.dtype
        Dtype of the stored pixel values.
    plan : StackPlan
        The slice plan the volume was assembled with.
    warnings : list of str
        Problems found while reading (header warnings are prepended).

    Returns
    -------
    ScanMetadata
    """
    used = [r for r in slots if r is not None]
    first = used[0]
    info = first.info
    modality = info.get("modality", "") or series.modality
    rescale_type = (info.get("rescale_type") or "").upper()
    units = "HU" if modality == "CT" and rescale_type in ("", "HU") else ""
    files: list[str] = []
    seen: set[str] = set()
    for ref in used:
        if ref.path not in seen:
            seen.add(ref.path)
            files.append(ref.path)
    window = next((r.window for r in used if r.window is not None), None)
    extra: dict[str, Any] = {
        "series_key": series.key,
        "series_number": info.get("series_number"),
        "patient_id": info.get("patient_id", ""),
        "patient_name": info.get("patient_name", ""),
        "study_date": info.get("study_date", ""),
        "series_date": info.get("series_date", ""),
        "acquisition_datetime": info.get("acquisition_datetime", ""),
        "study_description": info.get("study_description", ""),
        "body_part": info.get("body_part", ""),
        "manufacturer": info.get("manufacturer", ""),
        "sop_class": info.get("sop_class", ""),
        "transfer_syntaxes": sorted({UID(r.transfer_syntax).name for r in used}),
        "is_multiframe": any(r.n_frames_in_file > 1 for r in used),
        "instance_numbers": [r.instance_number if r else None for r in slots],
        "frame_numbers": [r.frame if r else None for r in slots],
        "slice_spacing_mm": plan.slice_spacing,
        "gantry_tilt_deg": plan.tilt_deg,
        "missing_slices": list(plan.missing),
        "photometric": first.photometric,
        "rescale": luts[0] if len(luts) == 1 else "per slice",
        "stored_dtype": str(stored),
    }
    padding, padding_warnings = pixel_padding(used, luts)
    extra.update(padding)
    for key in ("echo_time", "repetition_time"):
        if info.get(key) is not None:
            extra[key] = info[key]
    file_infos = {id(ref.info): ref.info for ref in used}.values()
    header_warnings = [w for file_info in file_infos for w in file_info.get("header_warnings", [])]
    return ScanMetadata(
        source=series.source or (os.path.dirname(files[0]) if len(files) > 1 else files[0]),
        format="dicom",
        modality=modality,
        units=units,
        series_uid=series.uid,
        study_uid=info.get("study_uid", ""),
        frame_of_reference_uid=info.get("frame_of_reference_uid", ""),
        series_description=info.get("series_description", ""),
        window=window,
        qform_code=1,
        sform_code=1,
        files=files,
        warnings=header_warnings + warnings + padding_warnings,
        extra=extra,
    )
