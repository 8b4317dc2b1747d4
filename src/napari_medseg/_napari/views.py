"""Standard radiological views of the napari world (S, P, L) of :mod:`napari_medseg.geometry`.

* axial: slider along S; anterior at the top, patient right on the screen's left;
* coronal: slider along P; superior at the top, patient right on the left;
* sagittal: slider along L; superior at the top, anterior on the left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import napari

#: plane -> (world axis under the slider, (vertical, horizontal) screen axes,
#: napari 2D camera orientation of those two axes).
VIEWS: dict[str, tuple[int, tuple[int, int], tuple[str, str]]] = {
    "axial": (0, (1, 2), ("down", "right")),
    "coronal": (1, (0, 2), ("up", "right")),
    "sagittal": (2, (0, 1), ("up", "right")),
}


def set_view(viewer: napari.Viewer, plane: str) -> None:
    """Show ``plane`` (``"axial"``, ``"coronal"`` or ``"sagittal"``) in 2D.

    Sets ``viewer.dims.order`` so the slider runs along the plane normal and the
    2D camera orientation so superior is up in coronal and sagittal views. Only
    the last three dims are reordered (a leading time/channel axis stays put).
    """
    if plane not in VIEWS:
        raise ValueError(f"plane must be one of {sorted(VIEWS)}, got {plane!r}")
    slider, (vertical, horizontal), orientation = VIEWS[plane]
    ndim = viewer.dims.ndim
    if ndim < 3:
        return
    lead = list(range(ndim - 3))
    offset = ndim - 3
    viewer.dims.ndisplay = 2
    viewer.dims.order = tuple(lead + [offset + slider, offset + vertical, offset + horizontal])
    viewer.scene.camera.orientation2d = orientation
    viewer.reset_view()
