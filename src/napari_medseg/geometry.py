"""Orientation codes, obliquity and the mapping between a scan and napari's view.

Conventions
-----------
* Affines map voxel indices ``(i, j, k)`` to RAS+ millimetres (nibabel).
* napari world coordinates are patient millimetres in DICOM LPS+, listed in
  napari's axis order ``(S, P, L)``: world axis 0 runs inferior -> superior
  (the slider of the axial view), axis 1 anterior -> posterior (screen top ->
  bottom) and axis 2 patient right -> left (screen left -> right). The axial
  view is therefore radiological: anterior at the top, patient right on the
  screen's left. The frame is right-handed, so napari's 3D view is not mirrored.
* The image is shown through :class:`DisplayGeometry`: the stored array is
  flipped/transposed (a view, no copy) so its axes run along ``(S, P, L)``, and
  placed with a scale and translate. Oblique (or gantry-tilted) scans are shown
  de-obliqued around their centre; their true affine stays in the geometry and
  is what is saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
from nibabel import orientations as nio

#: napari world axes in axis order, as RAS+ axis codes.
DISPLAY_AXCODES = ("S", "P", "L")

#: 4x4 matrix taking RAS+ coordinates (x, y, z) to napari world (S, P, L) = (z, -y, -x).
RAS_TO_WORLD = np.array(
    [[0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)

#: Angles below this (degrees) count as axis-aligned: float noise in DICOM headers.
OBLIQUE_TOLERANCE_DEG = 1e-3


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel step along each array axis.

    Parameters
    ----------
    affine : numpy.ndarray
        4x4 voxel -> mm matrix.

    Returns
    -------
    numpy.ndarray
        Shape (3,), the norms of the affine's first three columns, in mm.
    """
    return np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))


def orientation_code(affine: np.ndarray) -> str:
    """RAS+ axis code of the voxel axes, e.g. ``"LPS"`` for a typical DICOM axial CT.

    Each letter says towards which patient side the index along that array axis
    increases (nibabel's ``aff2axcodes``; the closest axis for oblique scans). An axis
    a singular affine leaves without a direction is ``"?"``.
    """
    return "".join(code or "?" for code in nib.aff2axcodes(affine))


def obliquity_deg(affine: np.ndarray) -> float:
    """Largest angle, in degrees, between a voxel axis and its closest patient axis.

    0 for an axis-aligned grid. For a gantry-tilted CT this is the tilt angle of the
    slice-stacking direction.
    """
    linear = np.asarray(affine, dtype=float)[:3, :3]
    unit = linear / voxel_spacing(affine)
    cosines = np.clip(np.abs(unit).max(axis=0), 0.0, 1.0)
    return float(np.degrees(np.arccos(cosines)).max())


def shear_deg(affine: np.ndarray) -> float:
    """Largest departure from 90 degrees between two voxel axes (0 for a rigid grid).

    Non-zero for CT acquired with gantry tilt when its sheared geometry is kept.
    """
    linear = np.asarray(affine, dtype=float)[:3, :3]
    unit = linear / voxel_spacing(affine)
    gram = np.clip(np.abs(unit.T @ unit), 0.0, 1.0)
    off = gram[~np.eye(3, dtype=bool)]
    return float(np.degrees(np.arcsin(off)).max())


@dataclass(frozen=True)
class DisplayGeometry:
    """How a stored voxel array is shown in napari, and how to get back.

    Attributes
    ----------
    source_affine : numpy.ndarray
        4x4 voxel -> RAS+ mm matrix of the stored array (the truth, saved on write).
    source_shape : tuple of int
        Shape ``(I, J, K)`` of the stored array.
    transform : numpy.ndarray
        nibabel orientation array (3, 2) taking the stored array to the display
        array whose axes run along ``(S, P, L)``.
    scale : numpy.ndarray
        Shape (3,), display voxel size along napari axes ``(S, P, L)``, in mm.
    translate : numpy.ndarray
        Shape (3,), world position (mm) of display voxel ``(0, 0, 0)``.
    deobliqued : bool
        True when the scan is oblique or sheared and napari shows it straightened.
    """

    source_affine: np.ndarray
    source_shape: tuple[int, int, int]
    transform: np.ndarray
    scale: np.ndarray
    translate: np.ndarray
    deobliqued: bool

    @property
    def display_shape(self) -> tuple[int, int, int]:
        """Shape of the array napari shows, along ``(S, P, L)``."""
        return _display_shape(self.transform, self.source_shape)

    @property
    def world_affine(self) -> np.ndarray:
        """4x4 display voxel -> napari world matrix (diagonal scale + translate)."""
        out = np.diag(np.append(self.scale, 1.0))
        out[:3, 3] = self.translate
        return out

    @property
    def display_affine(self) -> np.ndarray:
        """4x4 display voxel index ``(s, p, l)`` -> RAS+ mm: where a voxel napari shows
        truly lies (for an oblique scan too, which napari shows straightened)."""
        return self.source_affine @ nio.inv_ornt_aff(self.transform, self.source_shape)

    def to_display(self, array: np.ndarray) -> np.ndarray:
        """Stored-order array -> display-order ``(S, P, L)`` array (a view)."""
        if tuple(array.shape[:3]) != tuple(self.source_shape):
            raise ValueError(
                f"array of shape {array.shape} does not match the scan grid {self.source_shape}"
            )
        return nio.apply_orientation(array, self.transform)

    def to_source(self, array: np.ndarray) -> np.ndarray:
        """Display-order array -> stored-order array (a view), for saving."""
        if tuple(array.shape[:3]) != tuple(self.display_shape):
            raise ValueError(
                f"array of shape {array.shape} does not match the display grid "
                f"{self.display_shape} of the scan"
            )
        return nio.apply_orientation(array, _inverse_transform(self.transform))

    def matches_grid(
        self, shape: tuple[int, ...], scale: np.ndarray, translate: np.ndarray, tol_mm: float = 1e-3
    ) -> bool:
        """Whether a napari layer with this shape/scale/translate lies on this display grid."""
        return (
            tuple(int(n) for n in shape) == tuple(self.display_shape)
            and np.allclose(scale, self.scale, atol=tol_mm)
            and np.allclose(translate, self.translate, atol=tol_mm)
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for ``layer.metadata`` (lists and floats only)."""
        return {
            "source_affine": self.source_affine.tolist(),
            "source_shape": list(self.source_shape),
            "transform": self.transform.tolist(),
            "scale": self.scale.tolist(),
            "translate": self.translate.tolist(),
            "deobliqued": bool(self.deobliqued),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DisplayGeometry:
        """Inverse of :meth:`to_dict`."""
        return cls(
            source_affine=np.asarray(data["source_affine"], dtype=float),
            source_shape=tuple(int(n) for n in data["source_shape"]),  # type: ignore[arg-type]
            transform=np.asarray(data["transform"], dtype=float),
            scale=np.asarray(data["scale"], dtype=float),
            translate=np.asarray(data["translate"], dtype=float),
            deobliqued=bool(data["deobliqued"]),
        )


def _display_shape(transform: np.ndarray, source_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Shape after applying an orientation ``transform`` to an array of ``source_shape``."""
    shape = [0, 0, 0]
    for src_axis, (dst_axis, _) in enumerate(transform):
        shape[int(dst_axis)] = int(source_shape[src_axis])
    return tuple(shape)  # type: ignore[return-value]


def _display_ornt() -> np.ndarray:
    return nio.axcodes2ornt(DISPLAY_AXCODES)


def _inverse_transform(transform: np.ndarray) -> np.ndarray:
    """Orientation transform that undoes ``transform`` (display -> stored order)."""
    inverse = np.zeros_like(transform)
    for src_axis, (dst_axis, flip) in enumerate(transform):
        inverse[int(dst_axis)] = (src_axis, flip)
    return inverse


def display_geometry(affine: np.ndarray, shape: tuple[int, ...]) -> DisplayGeometry:
    """Work out how to show a stored array radiologically in patient millimetres.

    Parameters
    ----------
    affine : numpy.ndarray
        4x4 voxel -> RAS+ mm matrix of the stored array.
    shape : tuple of int
        Stored array shape ``(I, J, K)``.

    Returns
    -------
    DisplayGeometry
        For an axis-aligned scan the display is exact: every voxel centre lands on
        its true patient position. For an oblique or sheared scan the display grid
        keeps the voxel sizes and the centre of the volume but drops the rotation.
    """
    affine = np.asarray(affine, dtype=float)
    shape3 = tuple(int(n) for n in shape[:3])
    orientation = nio.io_orientation(affine)
    if np.isnan(orientation).any():  # nibabel's "Unable to find out axis 2.0" otherwise
        raise ValueError(
            f"cannot show a grid whose affine is singular (voxel axes {orientation_code(affine)} "
            "do not span 3D space); readers replace such an affine before it gets here"
        )
    transform = nio.ornt_transform(orientation, _display_ornt())
    # affine of the display-order array: display index -> RAS+ mm
    display_affine = affine @ nio.inv_ornt_aff(transform, shape3)
    world = RAS_TO_WORLD @ display_affine
    scale = voxel_spacing(world)
    deobliqued = (
        obliquity_deg(affine) > OBLIQUE_TOLERANCE_DEG or shear_deg(affine) > OBLIQUE_TOLERANCE_DEG
    )
    if deobliqued:
        centre_index = (np.asarray(_display_shape(transform, shape3), dtype=float) - 1.0) / 2.0
        centre_world = world[:3, :3] @ centre_index + world[:3, 3]
        translate = centre_world - scale * centre_index
    else:
        translate = world[:3, 3].copy()
    return DisplayGeometry(
        source_affine=affine,
        source_shape=shape3,  # type: ignore[arg-type]
        transform=transform,
        scale=scale,
        translate=translate,
        deobliqued=bool(deobliqued),
    )


def remove_shear(
    array: np.ndarray, affine: np.ndarray, *, order: int = 1, fill: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a gantry-tilted (sheared) volume onto the orthogonal grid of its slices.

    Each slice keeps its plane; it is shifted in-plane so that the slices stack along
    their normal, which is what dcm2niix calls tilt correction. Needed only for tools
    that cannot read a sheared affine (ITK and everything built on it).

    Parameters
    ----------
    array : numpy.ndarray
        Shape ``(I, J, K)``; I and J span the slice plane, K the slices.
    affine : numpy.ndarray
        4x4 voxel -> RAS+ mm matrix whose third column is the (tilted) slice step.
    order : int
        Spline order of the in-plane interpolation: 1 (linear) for images, 0
        (nearest) for label maps.
    fill : float, optional
        Value for voxels shifted in from outside the field of view (default: the
        array's minimum, i.e. air for CT).

    Returns
    -------
    array : numpy.ndarray
        Resampled voxels, shape ``(I, J, K)``, same dtype.
    affine : numpy.ndarray
        4x4 matrix with the same first two columns and origin and a third column
        along the slice normal (no shear).
    """
    from scipy import ndimage

    affine = np.asarray(affine, dtype=float)
    col_i, col_j, step = affine[:3, 0], affine[:3, 1], affine[:3, 2]
    normal = np.cross(col_i, col_j)
    normal /= np.linalg.norm(normal)
    if np.dot(normal, step) < 0:
        normal = -normal
    straight_step = np.dot(step, normal) * normal
    drift = step - straight_step  # in-plane offset added by every slice, mm
    # the slice plane's axes are orthogonal, so the drift splits into voxel units
    drift_ij = np.array(
        [np.dot(drift, col_i) / np.dot(col_i, col_i), np.dot(drift, col_j) / np.dot(col_j, col_j)]
    )
    fill_value = float(array.min()) if fill is None and array.size else float(fill or 0.0)
    out = np.empty_like(array)
    for k in range(array.shape[2]):
        ndimage.shift(
            array[:, :, k],
            k * drift_ij,
            output=out[:, :, k],
            order=order,
            mode="constant",
            cval=fill_value,
            prefilter=False,
        )
    straight = affine.copy()
    straight[:3, 2] = straight_step
    return out, straight
