"""Smoothed surface meshes of a label map: one closed triangle mesh per label.

:func:`label_meshes` turns a label map (a :class:`~napari_medseg.volume.Volume`) into one
:class:`LabelMesh` per label: vertices in RAS+ millimetres, triangles wound
counter-clockwise seen from outside (outward normals, positive
:func:`mesh_volume_mm3`). Each label is meshed inside its own bounding box padded with
one voxel of background, so a mesh is always closed (a label touching the edge of the
scan is closed along the edge) and ten organs on a 512 x 512 x 300 map cost what their
boxes cost, not ten passes over the whole map.

How a mesh is made
------------------
1. **Surface**: the boundary of the label's voxels, at the midpoints between voxel
   centres inside and outside (the 0.5 level of the binary mask), in voxel index
   coordinates: VTK's ``vtkDiscreteFlyingEdges3D`` (backend ``"vtk"``) or
   scikit-image's ``marching_cubes`` (backend ``"skimage"``); both give the same
   triangles up to their order.
2. **Smoothing**: a windowed-sinc low-pass filter (Taubin, Zhang and Golub, "Optimal
   surface smoothing as filter design", 1996) of ``smooth`` iterations:
   ``vtkWindowedSincPolyDataFilter`` (Hamming window, pass band 0.01, 3D Slicer's), or
   :func:`smooth_windowed_sinc` here (pass band 0.1: its 20-term expansion shrinks
   the surface below that); see :data:`PASS_BAND`. Unlike plain Laplacian smoothing it
   keeps an organ's volume (within 1 % alone) while the voxel staircase goes. The
   filter averages neighbours with equal weights, so it commutes with the affine:
   smoothing in index space equals smoothing in mm, on anisotropic and oblique grids
   alike.
3. **Volume**: what the filter still takes from a small or thin label (a fifth of the
   sample's 1.4 mL nodule on 5 mm slices) is given back as an even layer along the
   normals (:func:`keep_volume`, at most half a voxel), so every smoothed mesh encloses
   its label's voxel volume, the volume ``medseg report`` gives.
4. **Placement**: vertices go through the affine to RAS+ mm; a mirroring affine
   (negative determinant, e.g. a LAS-stored scan) reverses the winding, which is then
   turned back so the normals point outwards.

Choosing the backend (measured)
-------------------------------
``python bench/bench_mesh.py --backends`` (bench/RESULTS.md): one label each, 20
iterations; the filter's own volume error against the voxels (before step 3), the
final mesh's volume against the analytic shape and its mean distance from the true
surface; time on the development machine (2 cores, VTK 9.7.2, scikit-image 0.26)::

    case                                   backend       ms  filter alone     vs shape  distance mm
    sphere r 25 mm, LPS, 0.8x0.8x2.5 mm    vtk           48       +0.25 %      -0.15 %        0.097
                                           skimage       40       -0.45 %      -0.15 %        0.099
                                           surfacenets   12       -2.54 %      -2.69 %        0.211
    ellipsoid 40x24x16 mm, LIA (mirroring) vtk           43       +0.01 %      +0.10 %        0.190
      0.7x3x0.9 mm                         skimage       33       -0.81 %      +0.10 %        0.196
                                           surfacenets   15       -3.29 %      -3.19 %        0.269
    the same, oblique LPS, 0.9x0.9x3 mm    vtk           48       -0.11 %      -0.56 %        0.253
                                           skimage       58       -0.92 %      -0.56 %        0.244
                                           surfacenets   12       -3.71 %      -4.25 %        0.337
    small sphere r 10 mm, 0.8x0.8x5 mm     vtk            6       -3.26 %  -5.58 % (*)        0.520
                                           skimage        5       -6.64 %  -5.58 % (*)        0.481
                                           surfacenets    4      -20.09 %     -24.54 %        0.883
    phantom liver, 2112 mL, 512 grid       vtk          708       +0.37 %
                                           skimage      936       -0.01 %
                                           surfacenets  386       -0.10 %
    phantom right kidney, 182 mL           vtk          152       +0.38 %
                                           skimage      214       -0.08 %
                                           surfacenets   45       -0.64 %

    (*) the voxels themselves hold 5.6 % less than the sphere on 5 mm slices.
    Measured with the machine's load average at 5 (two other jobs on its 2 cores).

SurfaceNets (``vtkSurfaceNets3D``, its own constrained smoothing) is the fastest, but
it shrinks what is small or thick-sliced (-2.5 to -3.7 % on these shapes, -20 % on the
small sphere) and leaves its vertices farther from the true surface. Discrete flying
edges with the windowed-sinc filter and scikit-image with the filter in numpy make the
same surface after step 3 (the same volume, distances within 0.01 mm); VTK's is 1.3
times faster on organs (the 10 organs of a 512 x 512 x 300 map: 3.9 s against 4.4 s in
one run at that load; on tiny shapes they are even), and its filters release the GIL,
so the viewer stays responsive while *Show 3D* meshes in a worker (the longest pause
of the main thread while the phantom liver is meshed: 39 ms, against 0.49 s inside
scikit-image's marching cubes). So ``"vtk"`` is the default when the ``vtk`` package is
installed (the ``mesh`` extra) and ``"skimage"`` (always installed) the fallback.

Core module: no napari, no Qt; ``vtk`` is imported only when used.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np

from napari_medseg.labels.maps import LabelMapError, as_label_array, present_labels
from napari_medseg.progress import Progress, raise_if_cancelled
from napari_medseg.volume import Volume

logger = logging.getLogger(__name__)

#: Windowed-sinc smoothing iterations unless told otherwise (0: the raw surface).
DEFAULT_SMOOTH = 20
#: Pass band of the windowed-sinc filter of each backend (0 < band < 2, lower is
#: smoother), chosen by measurement (module docstring): VTK's filter keeps the volume
#: down to 0.01 (3D Slicer's default); the 20-term expansion here shrinks below 0.1.
PASS_BAND = {"vtk": 0.01, "skimage": 0.1}
#: The surface backends, fastest first (see the module docstring).
BACKENDS = ("vtk", "skimage")
#: Largest label value whose boxes are found in one pass (``ndimage.find_objects``).
_ONE_PASS_MAX = 1 << 16


@dataclass(frozen=True)
class LabelMesh:
    """The surface of one label.

    Attributes
    ----------
    value : int
        The label value.
    vertices : numpy.ndarray
        float32, shape ``(N, 3)``: vertex positions in RAS+ mm ``(x, y, z)``.
    faces : numpy.ndarray
        int32, shape ``(M, 3)``: vertex indices of each triangle, counter-clockwise
        seen from outside (normals point outwards).
    voxel_volume_mm3 : float
        Volume of the label's voxels (count x voxel volume), mm^3.
    """

    value: int
    vertices: np.ndarray
    faces: np.ndarray
    voxel_volume_mm3: float

    @property
    def volume_mm3(self) -> float:
        """Volume the mesh encloses, mm^3 (:func:`mesh_volume_mm3`)."""
        return mesh_volume_mm3(self.vertices, self.faces)


@cache
def vtk_available() -> bool:
    """Whether VTK's Python package (``vtk``, the ``mesh`` extra) can be imported."""
    try:
        import vtkmodules.vtkFiltersCore  # noqa: F401
        import vtkmodules.vtkFiltersGeneral  # noqa: F401
    except ImportError:
        return False
    return True


def default_backend() -> str:
    """``"vtk"`` when VTK is installed, else ``"skimage"`` (see the module docstring)."""
    return "vtk" if vtk_available() else "skimage"


def mesh_volume_mm3(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume a closed triangle mesh encloses (divergence theorem), in mm^3.

    Positive when the triangles are wound counter-clockwise seen from outside.

    Parameters
    ----------
    vertices : numpy.ndarray
        Shape ``(N, 3)``, mm.
    faces : numpy.ndarray
        Shape ``(M, 3)``, vertex indices.
    """
    if len(faces) == 0:
        return 0.0
    v = np.asarray(vertices, dtype=np.float64)
    v = v - v.mean(axis=0)  # fewer cancelling digits far from the origin
    a, b, c = _corners(v, faces)
    return float(np.einsum("ij,ij->", a, _cross(b, c)) / 6.0)


def _corners(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, ...]:
    """The three corners of every triangle, each ``(M, 3)``."""
    faces = np.asarray(faces)
    return tuple(vertices[faces[:, i]] for i in range(3))


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of ``(M, 3)`` arrays (twice as fast as ``np.cross``)."""
    out = np.empty_like(a)
    out[:, 0] = a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1]
    out[:, 1] = a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2]
    out[:, 2] = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    return out


def _neighbour_mean(faces: np.ndarray, count: int):
    """Sparse ``(count, count)`` matrix averaging each vertex's edge neighbours."""
    from scipy import sparse

    a = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    b = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    ones = np.ones(2 * a.size, dtype=np.float64)
    adjacency = sparse.csr_matrix(
        (ones, (np.concatenate([a, b]), np.concatenate([b, a]))), shape=(count, count)
    )
    adjacency.data[:] = 1.0  # an edge shared by two triangles counts once
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    return sparse.diags(1.0 / np.maximum(degree, 1.0)) @ adjacency


def smooth_windowed_sinc(
    vertices: np.ndarray, faces: np.ndarray, iterations: int, pass_band: float | None = None
) -> np.ndarray:
    """Windowed-sinc low-pass smoothing of a triangle mesh (no shrinking).

    The filter of Taubin, Zhang and Golub (1996), as ``vtkWindowedSincPolyDataFilter``:
    a Chebyshev expansion of the ideal low-pass of the mesh Laplacian (equal weights
    of the edge neighbours) up to degree ``iterations``, Hamming-windowed and scaled so
    that a still surface stays still.

    Parameters
    ----------
    vertices : numpy.ndarray
        Shape ``(N, 3)``, any units.
    faces : numpy.ndarray
        Shape ``(M, 3)``, vertex indices.
    iterations : int
        Degree of the filter (0: no smoothing); 10 to 30 is usual.
    pass_band : float, optional
        In (0, 2): frequencies of the Laplacian below it pass; lower is smoother, and
        below about 0.1 a filter of 20 iterations shrinks the surface (-10 % at 0.01).
        Default ``PASS_BAND["skimage"]``.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(N, 3)``: the smoothed vertices, same units.
    """
    x0 = np.asarray(vertices, dtype=np.float64)
    if iterations <= 0 or len(faces) == 0:
        return x0.copy()
    pass_band = PASS_BAND["skimage"] if pass_band is None else float(pass_band)
    if not 0.0 < pass_band < 2.0:
        raise ValueError(f"pass_band must be in (0, 2), got {pass_band}")
    mean = _neighbour_mean(np.asarray(faces), len(x0))
    order = np.arange(iterations + 1)
    theta = np.arccos(1.0 - 0.5 * pass_band)
    sinc = np.empty(iterations + 1)
    sinc[0] = theta / np.pi
    sinc[1:] = 2.0 * np.sin(order[1:] * theta) / (order[1:] * np.pi)
    weights = sinc * (0.54 + 0.46 * np.cos(order * np.pi / (iterations + 1)))
    weights /= weights.sum()  # f(0) = 1: a still surface stays where it is

    def step(x: np.ndarray) -> np.ndarray:  # (I - K/2) x with K = I - mean
        return 0.5 * (x + mean @ x)

    x1 = step(x0)
    out = weights[0] * x0 + weights[1] * x1
    for weight in weights[2:]:  # Chebyshev recurrence T_k = 2 y T_(k-1) - T_(k-2)
        x0, x1 = x1, 2.0 * step(x1) - x0
        out += weight * x1
    return out


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, float]:
    """Area-weighted unit vertex normals ``(N, 3)`` (0 for a vertex of no triangle), and
    the mesh's area (the vertices' units squared)."""
    v = np.asarray(vertices, dtype=np.float64)
    a, b, c = _corners(v, faces)
    face_normals = _cross(b - a, c - a)  # length: twice the triangle's area
    normals = np.zeros_like(v)
    for corner in range(3):
        for axis in range(3):
            normals[:, axis] += np.bincount(
                faces[:, corner], weights=face_normals[:, axis], minlength=len(v)
            )
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    area = 0.5 * float(np.sqrt((face_normals**2).sum(axis=1)).sum())
    return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0), area


def keep_volume(
    vertices: np.ndarray,
    faces: np.ndarray,
    target: float,
    *,
    max_offset: float = 0.5,
    steps: int = 3,
    enclosed: float | None = None,
) -> np.ndarray:
    """Move every vertex along its normal by one distance so the mesh encloses ``target``.

    What a low-pass filter still takes from a small or thin label (a 1.4 mL nodule on
    5 mm slices loses a fifth of its volume) comes back as an even layer over the whole
    surface, so separate parts of a label stay where they are (a global scaling would
    move them apart). Secant steps on ``V(d)``, the first with the area as slope.

    Parameters
    ----------
    vertices : numpy.ndarray
        ``(N, 3)``, any units; faces counter-clockwise seen from outside.
    faces : numpy.ndarray
        ``(M, 3)``.
    target : float
        The volume to enclose, in the vertices' units cubed.
    max_offset : float
        The largest distance a vertex is moved, in the vertices' units (a mesh that
        would need more, a thread-thin label, keeps some of its loss).
    steps : int
        Steps at most (the third lands within 0.001 %).
    enclosed : float, optional
        :func:`mesh_volume_mm3` of ``vertices``, when the caller has it.

    Returns
    -------
    numpy.ndarray
        float64 ``(N, 3)``.
    """
    start = np.asarray(vertices, dtype=np.float64)
    out = start.copy()
    if len(faces) == 0 or target <= 0:
        return out
    normals, area = vertex_normals(start, faces)
    if enclosed is None:
        enclosed = mesh_volume_mm3(start, faces)
    offset, previous, slope = 0.0, 0.0, area  # dV/d(offset): the area first, then secants
    for step in range(steps):
        if step:
            before = enclosed
            enclosed = mesh_volume_mm3(out, faces)
            if offset != previous and enclosed != before:
                slope = (enclosed - before) / (offset - previous)
        if abs(enclosed - target) <= 1e-5 * target or slope <= 0:
            break
        previous = offset
        offset = float(np.clip(offset + (target - enclosed) / slope, -max_offset, max_offset))
        out = start + offset * normals
    return out


def _surface_skimage(mask: np.ndarray, smooth: int) -> tuple[np.ndarray, np.ndarray]:
    from skimage.measure import marching_cubes

    vertices, faces, _, _ = marching_cubes(mask, 0.5, allow_degenerate=False)
    return smooth_windowed_sinc(vertices, faces, smooth), faces


@cache
def _vtk_threads() -> None:
    """Let VTK's filters use every core: the ``vtk`` wheel runs them on one by default
    (its ``Sequential`` SMP backend); the smoothing takes 40 % less time on two cores."""
    from vtkmodules.vtkCommonCore import vtkSMPTools

    if vtkSMPTools.GetBackend() == "Sequential":
        vtkSMPTools.SetBackend("STDThread")


def _surface_vtk(mask: np.ndarray, smooth: int) -> tuple[np.ndarray, np.ndarray]:
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkFiltersCore import vtkWindowedSincPolyDataFilter
    from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D

    _vtk_threads()
    image = vtkImageData()
    image.SetDimensions(*mask.shape)
    image.GetPointData().SetScalars(numpy_to_vtk(mask.ravel(order="K"), deep=1))  # x fastest
    surface = vtkDiscreteFlyingEdges3D()
    surface.SetInputData(image)
    surface.SetValue(0, 1)
    surface.ComputeNormalsOff()
    surface.ComputeGradientsOff()
    surface.ComputeScalarsOff()
    last = surface
    if smooth > 0:
        last = vtkWindowedSincPolyDataFilter()
        last.SetInputConnection(surface.GetOutputPort())
        last.SetNumberOfIterations(int(smooth))
        last.SetPassBand(PASS_BAND["vtk"])
        last.SetWindowFunctionToHamming()  # smoother than its default Nuttall, as close
        last.BoundarySmoothingOff()
        last.FeatureEdgeSmoothingOff()
        last.NonManifoldSmoothingOn()
        last.NormalizeCoordinatesOn()
    last.Update()
    mesh = last.GetOutput()
    if mesh.GetNumberOfPolys() == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int32)
    vertices = vtk_to_numpy(mesh.GetPoints().GetData()).astype(np.float64)
    polys = mesh.GetPolys()
    offsets = vtk_to_numpy(polys.GetOffsetsArray())
    if not np.all(np.diff(offsets) == 3):  # flying edges makes triangles only
        raise RuntimeError("vtkDiscreteFlyingEdges3D returned polygons that are not triangles")
    return vertices, vtk_to_numpy(polys.GetConnectivityArray()).reshape(-1, 3)


def mask_mesh(
    mask: np.ndarray,
    affine: np.ndarray,
    *,
    smooth: int = DEFAULT_SMOOTH,
    backend: str | None = None,
    offset: Iterable[int] = (0, 0, 0),
    keep: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The smoothed, outward-wound surface of a binary mask, in mm.

    Parameters
    ----------
    mask : numpy.ndarray
        bool, shape ``(I, J, K)``; it is padded with one voxel of background here.
    affine : numpy.ndarray
        4x4 voxel index -> RAS+ mm matrix of the grid ``mask`` was cut from.
    smooth : int
        Windowed-sinc iterations (0: the raw surface at the voxel boundaries).
    backend : {"vtk", "skimage"}, optional
        Default :func:`default_backend`.
    offset : tuple of int
        Index of ``mask[0, 0, 0]`` on the affine's grid (the corner of a crop).
    keep : bool
        Give the smoothed mesh the volume of the mask's voxels back (:func:`keep_volume`).

    Returns
    -------
    vertices : numpy.ndarray
        float32 ``(N, 3)``, RAS+ mm.
    faces : numpy.ndarray
        int32 ``(M, 3)``, counter-clockwise seen from outside. Both empty for an
        empty mask.
    """
    backend = backend or default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"unknown mesh backend {backend!r}; choose one of {BACKENDS}")
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0 iterations, got {smooth}")
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros((0, 3), dtype=np.float32), np.zeros((0, 3), dtype=np.int32)
    # one voxel of background around it, uint8, in Fortran order: VTK's x runs fastest
    padded = np.zeros(tuple(n + 2 for n in mask.shape), dtype=np.uint8, order="F")
    padded[1:-1, 1:-1, 1:-1] = mask
    make = _surface_vtk if backend == "vtk" else _surface_skimage
    vertices, faces = make(padded, int(smooth))
    faces = np.ascontiguousarray(faces, dtype=np.int32)
    enclosed = mesh_volume_mm3(vertices, faces)
    if enclosed < 0:  # wound inwards in index space
        faces, enclosed = faces[:, ::-1].copy(), -enclosed
    if smooth > 0 and keep:  # in index units: voxels
        target = float(np.count_nonzero(mask))
        vertices = keep_volume(vertices, faces, target, enclosed=enclosed)
    affine = np.asarray(affine, dtype=np.float64)
    linear = affine[:3, :3]
    if np.linalg.det(linear) < 0:  # a mirroring grid turns the winding inside out
        faces = faces[:, ::-1].copy()
    corner = np.asarray(list(offset), dtype=np.float64) - 1.0  # the padding voxel
    placed = (vertices + corner) @ linear.T + affine[:3, 3]
    return placed.astype(np.float32), faces


def label_boxes(
    array: np.ndarray, values: Iterable[int] | None = None
) -> dict[int, tuple[slice, ...]]:
    """Bounding box (one slice per axis) of each label a map holds.

    Parameters
    ----------
    array : numpy.ndarray
        Integer label map, shape ``(I, J, K)``, values >= 0.
    values : iterable of int, optional
        The labels wanted (default: all); those the map does not hold are left out.

    Returns
    -------
    dict
        ``{value: box}`` in ascending value order, background (0) left out. Maps
        with values up to 65536 are searched in one pass (``ndimage.find_objects``,
        about 0.4 s for 512 x 512 x 300, in the array's memory order), others label by
        label.
    """
    from scipy import ndimage

    from napari_medseg.labels.components import bounding_box

    wanted = None if values is None else {int(v) for v in values}
    top = int(array.max()) if array.size else 0
    if top <= 0 or (wanted is not None and not wanted):
        return {}
    if array.dtype.kind in "iu" and top <= _ONE_PASS_MAX:
        # in memory order: a NIfTI array is Fortran-ordered (6x faster than across it)
        flip = array.flags.f_contiguous and not array.flags.c_contiguous
        found = ndimage.find_objects(array.T if flip else array, max_label=top)
        boxes = {v: (box[::-1] if flip else box) for v, box in enumerate(found, start=1) if box}
    else:
        candidates = present_labels(array) if wanted is None else sorted(wanted)
        boxes = {int(v): bounding_box(array == v) for v in candidates if 0 < v <= top}
    return {v: box for v, box in boxes.items() if box and (wanted is None or v in wanted)}


def label_meshes(
    volume: Volume,
    values: Iterable[int] | None = None,
    *,
    skip: Iterable[int] = (),
    smooth: int = DEFAULT_SMOOTH,
    backend: str | None = None,
    keep: bool = True,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> list[LabelMesh]:
    """One smoothed surface mesh per label of a label map, in RAS+ mm.

    Parameters
    ----------
    volume : Volume
        Label map, array ``(I, J, K)`` (0 = background), affine voxel -> RAS+ mm (any
        axis order, oblique and anisotropic grids included).
    values : iterable of int, optional
        Labels to mesh (default: every label the map holds), in the order returned.
    skip : iterable of int
        Labels left out when ``values`` is not given (hidden ones, say).
    smooth : int
        Windowed-sinc smoothing iterations (0: the raw voxel-boundary surface).
    backend : {"vtk", "skimage"}, optional
        Default :func:`default_backend`.
    keep : bool
        Give each smoothed mesh its label's voxel volume back (:func:`keep_volume`);
        False shows what the filter alone does.
    progress : Progress, optional
        ``progress(done, total)`` after each label.
    cancel : threading.Event, optional
        Checked before each label: raises :class:`~napari_medseg.errors.Cancelled`.

    Returns
    -------
    list of LabelMesh

    Raises
    ------
    LabelMapError
        The map is not a label map (fractional or negative values), or does not hold
        a requested label; the message names the file (``metadata.source``).
    """
    source = volume.metadata.source or "the label map"
    array = as_label_array(volume.array, source)
    wanted = None if values is None else list(dict.fromkeys(int(v) for v in values))
    boxes = label_boxes(array, wanted)
    if wanted is None:
        left_out = {int(v) for v in skip}
        wanted = [v for v in boxes if v not in left_out]
    missing = [v for v in wanted if v not in boxes]
    if missing:
        present = [int(v) for v in present_labels(array)]
        held = ", ".join(str(v) for v in present) or "none"
        raise LabelMapError(
            source,
            f"holds no voxel of label {', '.join(str(v) for v in missing)} "
            f"(the labels it holds: {held}).",
            "Choose labels the map holds.",
        )
    voxel_mm3 = float(abs(np.linalg.det(volume.affine[:3, :3])))
    meshes = []
    for done, value in enumerate(wanted):
        raise_if_cancelled(cancel, "building the surface meshes was cancelled")
        box = boxes[value]
        mask = array[box] == value
        vertices, faces = mask_mesh(
            mask,
            volume.affine,
            smooth=smooth,
            backend=backend,
            offset=[s.start for s in box],
            keep=keep,
        )
        meshes.append(LabelMesh(value, vertices, faces, float(mask.sum()) * voxel_mm3))
        logger.debug("label %d: %d vertices, %d triangles", value, len(vertices), len(faces))
        if progress is not None:
            progress(done + 1, len(wanted))
    return meshes


__all__ = [
    "BACKENDS",
    "DEFAULT_SMOOTH",
    "LabelMesh",
    "PASS_BAND",
    "default_backend",
    "label_boxes",
    "keep_volume",
    "label_meshes",
    "mask_mesh",
    "mesh_volume_mm3",
    "smooth_windowed_sinc",
    "vertex_normals",
    "vtk_available",
]
