"""Enhanced (functional-group) multi-frame CT/MR/PET: one :class:`FrameRef` per frame.

Each frame's geometry and modality LUT come from its Per-Frame Functional Groups
item, falling back to the Shared Functional Groups (PS3.3 C.7.6.16), then to the
top-level attributes (Legacy Converted objects sometimes keep them there).
"""

from __future__ import annotations

from typing import Any

from pydicom.datadict import tag_for_keyword

from napari_medseg.io.dicom.records import FrameRef, copy_frame
from napari_medseg.io.dicom.values import to_float, to_floats, to_int, to_str

#: Dimension index pointers that describe where a frame is in space, not which volume.
_SPATIAL_POINTERS = {
    tag_for_keyword("StackID"),
    tag_for_keyword("InStackPositionNumber"),
    tag_for_keyword("ImagePositionPatient"),
    tag_for_keyword("SliceLocation"),
}


def _item(group: Any, sequence: str) -> Any:
    """First item of ``sequence`` inside a functional-group item, or None."""
    if group is None:
        return None
    seq = group.get(sequence)
    if not seq:
        return None
    return seq[0]


def _lookup(per_frame: Any, shared: Any, sequence: str) -> Any:
    item = _item(per_frame, sequence)
    return item if item is not None else _item(shared, sequence)


def enhanced_frames(ds: Any, base: FrameRef) -> list[FrameRef]:
    """Split an enhanced multi-frame header into one record per frame.

    Parameters
    ----------
    ds : pydicom.Dataset
        Header (pixel data not needed) with a PerFrameFunctionalGroupsSequence.
    base : FrameRef
        Record filled from the top-level attributes; copied for every frame.

    Returns
    -------
    list of FrameRef
        In frame order; ``frame`` is the 0-based frame number in the file.
    """

    per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared_seq = ds.get("SharedFunctionalGroupsSequence") or []
    shared = shared_seq[0] if len(shared_seq) else None
    n_frames = base.n_frames_in_file
    if len(per_frame_seq) < n_frames:
        base.info.setdefault("header_warnings", []).append(
            f"{base.path}: NumberOfFrames is {n_frames} but only {len(per_frame_seq)} "
            "per-frame functional groups are present; the extra frames are ignored"
        )
        n_frames = len(per_frame_seq)

    pointers = [
        int(item.get("DimensionIndexPointer"))
        for item in (ds.get("DimensionIndexSequence") or [])
        if item.get("DimensionIndexPointer") is not None
    ]
    keep_dims = [i for i, p in enumerate(pointers) if p not in _SPATIAL_POINTERS]

    frames: list[FrameRef] = []
    for index in range(n_frames):
        per_frame = per_frame_seq[index]
        ref = copy_frame(base)
        ref.frame = index
        orient = _lookup(per_frame, shared, "PlaneOrientationSequence")
        ref.iop = to_floats(orient.get("ImageOrientationPatient"), 6) if orient else base.iop
        position = _lookup(per_frame, shared, "PlanePositionSequence")
        ref.ipp = to_floats(position.get("ImagePositionPatient"), 3) if position else None
        measures = _lookup(per_frame, shared, "PixelMeasuresSequence")
        if measures is not None:
            spacing = to_floats(measures.get("PixelSpacing"), 2)
            ref.pixel_spacing = spacing or base.pixel_spacing  # type: ignore[assignment]
            ref.slice_thickness = to_float(measures.get("SliceThickness"), base.slice_thickness)
            ref.spacing_between_slices = to_float(
                measures.get("SpacingBetweenSlices"), base.spacing_between_slices
            )
        transform = _lookup(per_frame, shared, "PixelValueTransformationSequence")
        if transform is not None:
            ref.slope = to_float(transform.get("RescaleSlope"), 1.0) or 1.0
            ref.intercept = to_float(transform.get("RescaleIntercept"), 0.0) or 0.0
            rescale_type = to_str(transform.get("RescaleType"))
            if rescale_type and not base.info.get("rescale_type"):
                base.info["rescale_type"] = rescale_type
        voi = _lookup(per_frame, shared, "FrameVOILUTSequence")
        if voi is not None:
            center = to_float(voi.get("WindowCenter"))
            width = to_float(voi.get("WindowWidth"))
            if center is not None and width is not None and width > 0:
                ref.window = (center, width)
        frame_type = None
        for name in (
            "CTImageFrameTypeSequence",
            "MRImageFrameTypeSequence",
            "PETFrameTypeSequence",
        ):
            item = _lookup(per_frame, shared, name)
            if item is not None and item.get("FrameType"):
                frame_type = tuple(to_str(v).upper() for v in item.get("FrameType"))
                break
        if frame_type:
            ref.image_type = frame_type
            ref.is_localizer = base.is_localizer or "LOCALIZER" in frame_type

        content = _item(per_frame, "FrameContentSequence")
        split: dict[str, Any] = {}
        if content is not None:
            stack = content.get("StackID")
            ref.stack_id = to_str(stack) if stack is not None else None
            split["TemporalPositionIndex"] = to_int(content.get("TemporalPositionIndex"))
            values = content.get("DimensionIndexValues")
            if values is not None and keep_dims:
                values = list(values) if not isinstance(values, int) else [values]
                split["DimensionIndexValues"] = tuple(
                    int(values[i]) for i in keep_dims if i < len(values)
                )
            split["FrameAcquisitionNumber"] = to_int(content.get("FrameAcquisitionNumber"))
        echo = _lookup(per_frame, shared, "MREchoSequence")
        if echo is not None:
            split["EffectiveEchoTime"] = to_float(echo.get("EffectiveEchoTime"))
        cardiac = _lookup(per_frame, shared, "CardiacSynchronizationSequence")
        if cardiac is not None:
            split["NominalCardiacTriggerDelayTime"] = to_float(
                cardiac.get("NominalCardiacTriggerDelayTime")
            )
        diffusion = _lookup(per_frame, shared, "MRDiffusionSequence")
        if diffusion is not None:
            split["DiffusionBValue"] = to_float(diffusion.get("DiffusionBValue"))
        split["FrameType"] = "\\".join(ref.image_type)
        ref.split_values = split
        frames.append(ref)
    return frames
