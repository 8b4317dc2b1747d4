"""Surface meshes of label maps (labels/mesh.py) against analytic shapes and real labels.

Spheres and ellipsoids are drawn on voxel grids stored in several axis orders (two of
them mirroring, one oblique) with anisotropic voxels; the meshes are checked against
the analytic shape (volume, distance of every vertex from the true surface), against
the voxels (volume), and for what a mesh must be (closed, two triangles per edge,
normals pointing outwards). Each check runs on both backends; the VTK ones need the
``vtk`` package (the ``mesh`` extra, installed by the test extra in CI).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from geometry_cases import make_affine, rotation_matrix
from scipy import ndimage

from napari_medseg.errors import Cancelled
from napari_medseg.labels import mesh as meshing
from napari_medseg.labels.maps import LabelMapError
from napari_medseg.labels.mesh import label_meshes, mesh_volume_mm3, smooth_windowed_sinc
from napari_medseg.volume import ScanMetadata, Volume


def _backend(name: str) -> str:
    if name == "vtk":
        pytest.importorskip("vtkmodules.vtkFiltersGeneral")
    return name


@pytest.fixture(params=["vtk", "skimage"])
def backend(request) -> str:
    return _backend(request.param)


# ------------------------------------------------------------------ analytic shapes


class Ellipsoid:
    """An ellipsoid in RAS mm: centre, semi-axes (mm) and rotation."""

    def __init__(self, centre, semi, rotation_deg=(0.0, 0.0, 0.0)) -> None:
        self.centre = np.asarray(centre, dtype=float)
        self.semi = np.asarray(semi, dtype=float)
        self.rotation = rotation_matrix(rotation_deg)

    @property
    def volume_mm3(self) -> float:
        return 4.0 / 3.0 * np.pi * float(np.prod(self.semi))

    def _u(self, points: np.ndarray) -> np.ndarray:
        return ((np.asarray(points, float) - self.centre) @ self.rotation) / self.semi

    def inside(self, points: np.ndarray) -> np.ndarray:
        return (self._u(points) ** 2).sum(axis=-1) <= 1.0

    def outward(self, points: np.ndarray) -> np.ndarray:
        """Direction of the outward normal of the level surface through each point (RAS)."""
        return (self._u(points) / self.semi) @ self.rotation.T

    def distance_mm(self, points: np.ndarray) -> np.ndarray:
        """Distance of points near the surface from it (first order: |f| / |grad f|)."""
        u = self._u(points)
        norm = np.linalg.norm(u, axis=-1)
        grad = (u / self.semi) / norm[:, None]  # gradient of |u| in the rotated frame, 1/mm
        return np.abs(norm - 1.0) / np.linalg.norm(grad, axis=-1)


def draw(shape: Ellipsoid, axcodes: str, spacing, rotation_deg=(0.0, 0.0, 0.0), value=1):
    """A label map of ``shape`` on a grid with these axis codes, spacing and rotation,
    the shape in the middle with a margin of a few voxels."""
    reach = float(shape.semi.max()) + 3.0 * float(max(spacing))
    counts = [int(np.ceil(2 * reach / s)) + 1 for s in spacing]
    affine = make_affine(axcodes, spacing=tuple(spacing), rotation_deg=rotation_deg)
    middle = affine[:3, :3] @ ((np.array(counts) - 1) / 2.0)
    affine[:3, 3] = shape.centre - middle  # the grid's centre on the shape's
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in counts], indexing="ij"), axis=-1)
    ras = ijk @ affine[:3, :3].T + affine[:3, 3]
    array = np.where(shape.inside(ras.reshape(-1, 3)).reshape(counts), value, 0).astype(np.uint8)
    return Volume(array, affine, ScanMetadata(source="shape.nii.gz"))


SPHERE = Ellipsoid((12.0, -30.0, 40.0), (25.0, 25.0, 25.0))
ELLIPSOID = Ellipsoid((-20.0, 15.0, -60.0), (40.0, 24.0, 16.0), (25.0, -10.0, 35.0))

#: name -> (shape, axis codes, spacing mm, grid rotation degrees)
CASES = {
    "sphere, LPS, 0.8x0.8x2.5 mm": (SPHERE, "LPS", (0.8, 0.8, 2.5), (0.0, 0.0, 0.0)),
    "sphere, PSR (mirroring), 1.5x0.7x0.7 mm": (SPHERE, "PSR", (1.5, 0.7, 0.7), (0, 0, 0)),
    "ellipsoid, LIA (mirroring), 0.7x3x0.9 mm": (ELLIPSOID, "LIA", (0.7, 3.0, 0.9), (0, 0, 0)),
    "ellipsoid, oblique LPS, 0.9x0.9x3 mm": (ELLIPSOID, "LPS", (0.9, 0.9, 3.0), (12, -7, 20)),
}


def edge_uses(faces: np.ndarray) -> np.ndarray:
    """How many triangles share each undirected edge."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return counts


def directed_edges_unique(faces: np.ndarray) -> bool:
    """Consistent winding: no directed edge appears twice (neighbours traverse it oppositely)."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return len(np.unique(edges, axis=0)) == len(edges)


@pytest.mark.parametrize("case", list(CASES))
def test_mesh_of_an_analytic_shape_keeps_its_volume_and_surface(case, backend):
    shape, axcodes, spacing, rotation = CASES[case]
    volume = draw(shape, axcodes, spacing, rotation)
    (mesh,) = label_meshes(volume, backend=backend)
    assert mesh.vertices.dtype == np.float32 and mesh.vertices.shape[1] == 3
    assert mesh.faces.dtype == np.int32 and mesh.faces.shape[1] == 3
    voxels_mm3 = np.count_nonzero(volume.array) * abs(np.linalg.det(volume.affine[:3, :3]))
    assert mesh.voxel_volume_mm3 == pytest.approx(voxels_mm3)
    # the voxels themselves are close to the shape (so the two checks below differ)
    assert voxels_mm3 == pytest.approx(shape.volume_mm3, rel=0.01)
    assert mesh.volume_mm3 > 0  # outward winding
    assert mesh.volume_mm3 == pytest.approx(shape.volume_mm3, rel=0.02)
    assert mesh.volume_mm3 == pytest.approx(voxels_mm3, rel=0.02)
    # every vertex within a voxel of the true surface, in RAS mm
    assert shape.distance_mm(mesh.vertices).max() < max(spacing)
    # closed, consistently wound, every normal pointing outwards
    assert np.all(edge_uses(mesh.faces) == 2)
    assert directed_edges_unique(mesh.faces)
    corners = mesh.vertices[mesh.faces].astype(float)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    outward = np.einsum("ij,ij->i", normals, shape.outward(corners.mean(axis=1)))
    assert np.mean(outward > 0) > 0.999


def test_smoothing_brings_the_surface_closer_to_the_shape_without_shrinking_it(backend):
    shape, axcodes, spacing, rotation = CASES["ellipsoid, oblique LPS, 0.9x0.9x3 mm"]
    volume = draw(shape, axcodes, spacing, rotation)
    (raw,) = label_meshes(volume, smooth=0, backend=backend)
    (smooth,) = label_meshes(volume, smooth=20, backend=backend)
    (filtered,) = label_meshes(volume, smooth=20, backend=backend, keep=False)
    # the raw surface runs along the voxel faces: about half a voxel off the shape
    raw_error = shape.distance_mm(raw.vertices)
    smooth_error = shape.distance_mm(smooth.vertices)
    assert smooth_error.mean() < 0.6 * raw_error.mean()
    assert smooth_error.max() < max(spacing)
    # the filter alone keeps the volume of this organ-sized shape within 2 %; the even
    # layer of keep_volume makes it the voxels' volume
    assert filtered.volume_mm3 == pytest.approx(raw.volume_mm3, rel=0.02)
    assert smooth.volume_mm3 == pytest.approx(smooth.voxel_volume_mm3, rel=1e-4)
    offset = np.linalg.norm(smooth.vertices - filtered.vertices, axis=1)
    assert offset.max() < 0.5 * max(spacing)  # a thin layer: at most half a voxel
    assert offset.std() < 0.2 * offset.mean() + 1e-6  # and an even one


def test_windowed_sinc_keeps_the_volume_where_plain_laplacian_smoothing_shrinks():
    volume = draw(SPHERE, "RAS", (1.0, 1.0, 1.0))
    (raw,) = label_meshes(volume, smooth=0, backend="skimage")
    smoothed = smooth_windowed_sinc(raw.vertices, raw.faces, 20)
    # the same 20 passes of plain neighbour averaging, for contrast
    mean = meshing._neighbour_mean(raw.faces, len(raw.vertices))
    laplace = raw.vertices.astype(float)
    for _ in range(20):
        laplace = mean @ laplace
    start = mesh_volume_mm3(raw.vertices, raw.faces)
    assert mesh_volume_mm3(smoothed, raw.faces) == pytest.approx(start, rel=0.005)
    assert mesh_volume_mm3(laplace, raw.faces) < 0.97 * start
    assert np.array_equal(smooth_windowed_sinc(raw.vertices, raw.faces, 0), raw.vertices)


def test_mesh_volume_of_a_cube_by_the_divergence_theorem():
    corners = np.array([[x, y, z] for x in (0, 2) for y in (0, 3) for z in (0, 4)], float)
    corners += [100.0, -50.0, 7.0]  # far from the origin: no difference
    # the 12 triangles of the box, counter-clockwise seen from outside
    faces = np.array(
        [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
         [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
    )  # fmt: skip
    assert mesh_volume_mm3(corners, faces) == pytest.approx(24.0)
    assert mesh_volume_mm3(corners, faces[:, ::-1]) == pytest.approx(-24.0)


def test_backends_give_the_same_surface():
    pytest.importorskip("vtkmodules.vtkFiltersGeneral")
    volume = draw(ELLIPSOID, "LPS", (0.9, 0.9, 3.0), (12, -7, 20))
    (ours,) = label_meshes(volume, smooth=0, backend="skimage")
    (theirs,) = label_meshes(volume, smooth=0, backend="vtk")
    # the same triangles (the 0.5 level of the mask) up to their order
    assert len(ours.vertices) == len(theirs.vertices)
    assert len(ours.faces) == len(theirs.faces)
    key = np.lexsort(ours.vertices.T)
    other = np.lexsort(theirs.vertices.T)
    np.testing.assert_allclose(ours.vertices[key], theirs.vertices[other], atol=1e-3)
    assert ours.volume_mm3 == pytest.approx(theirs.volume_mm3, rel=1e-5)


def test_vtk_is_the_default_when_installed():
    pytest.importorskip("vtkmodules.vtkFiltersGeneral")
    assert meshing.default_backend() == "vtk"


# ------------------------------------------------------------------ several labels


def _two_labels() -> Volume:
    first = draw(SPHERE, "LPS", (1.0, 1.0, 2.0))
    array = first.array.copy()
    box = tuple(slice(0, n // 3) for n in array.shape)
    array[box] = np.where(array[box] == 0, 0, array[box])
    array[: array.shape[0] // 4, :, :] = np.where(array[: array.shape[0] // 4] == 0, 3, 1)
    return Volume(array, first.affine, first.metadata)


def test_each_label_is_meshed_in_its_box_and_closed_along_the_scan_edge(backend):
    volume = _two_labels()  # label 3 fills a slab along the edge of the scan
    meshes = label_meshes(volume, backend=backend)
    assert [m.value for m in meshes] == [1, 3]
    voxel_mm3 = abs(np.linalg.det(volume.affine[:3, :3]))
    for mesh in meshes:
        count = np.count_nonzero(volume.array == mesh.value)
        assert mesh.voxel_volume_mm3 == pytest.approx(count * voxel_mm3)
        assert np.all(edge_uses(mesh.faces) == 2)  # closed, also where it meets the edge
        assert mesh.volume_mm3 == pytest.approx(mesh.voxel_volume_mm3, rel=0.02)
    # the slab's raw mesh closes along the scan's edge, half a voxel beyond the centres
    (slab,) = label_meshes(volume, [3], smooth=0, backend=backend)
    ijk = (slab.vertices - volume.affine[:3, 3]) @ np.linalg.inv(volume.affine[:3, :3]).T
    assert ijk.min(axis=0) == pytest.approx([-0.5, -0.5, -0.5], abs=1e-3)
    assert ijk.max(axis=0)[1:] == pytest.approx(np.array(volume.shape[1:]) - 0.5, abs=1e-3)


def test_chosen_skipped_and_missing_labels_progress_and_cancel():
    volume = _two_labels()
    assert [m.value for m in label_meshes(volume, [3], backend="skimage")] == [3]
    assert [m.value for m in label_meshes(volume, skip=[1], backend="skimage")] == [3]
    with pytest.raises(LabelMapError, match=r"shape\.nii\.gz: holds no voxel of label 7 .*1, 3"):
        label_meshes(volume, [1, 7])
    calls = []
    label_meshes(volume, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        label_meshes(volume, cancel=cancel)
    negative = Volume(volume.array.astype(np.int16) - 1, volume.affine, volume.metadata)
    with pytest.raises(LabelMapError, match="shape.nii.gz"):
        label_meshes(negative)


def test_label_boxes_beyond_one_pass_and_for_wide_values():
    array = np.zeros((6, 7, 8), dtype=np.int32)
    array[1:3, 2:4, 3:8] = 70000  # above the one-pass limit
    array[4, 5, 0] = 2
    boxes = meshing.label_boxes(array)
    assert boxes == {2: (slice(4, 5), slice(5, 6), slice(0, 1)),
                     70000: (slice(1, 3), slice(2, 4), slice(3, 8))}  # fmt: skip
    assert meshing.label_boxes(array, [2]) == {2: boxes[2]}
    small = np.where(array == 70000, 5, array).astype(np.uint8)  # one pass, both orders
    expected = {2: boxes[2], 5: boxes[70000]}
    assert meshing.label_boxes(small) == expected
    assert meshing.label_boxes(np.asfortranarray(small)) == expected  # NIfTI's order
    assert meshing.label_boxes(np.zeros((2, 2, 2), np.uint8)) == {}


# ------------------------------------------------------------------ real label maps


def _real_labels() -> Volume:
    """Body and air spaces (lungs, airways) of the bundled chest CT, by thresholds: a real
    anatomy with the real 1.14 x 1.14 x 5 mm grid."""
    from napari_medseg.io.reader import read_scan
    from napari_medseg.samples import sample_path

    ct = read_scan(sample_path("chest_ct"))
    hu = np.asarray(ct.array)
    air, count = ndimage.label(hu < -400)
    outside = np.unique(np.concatenate([air[[0, -1]].ravel(), air[:, [0, -1]].ravel()]))
    sizes = np.bincount(air.ravel(), minlength=count + 1)
    sizes[outside] = 0  # the air around the patient
    labels = np.zeros(hu.shape, dtype=np.uint8)
    body, parts = ndimage.label(hu > -300)
    body_sizes = np.bincount(body.ravel())
    body_sizes[0] = 0
    labels[body == int(np.argmax(body_sizes))] = 1  # the largest: the body
    labels[air == int(np.argmax(sizes[1:])) + 1] = 2  # the largest inside: lungs and airways
    return Volume(labels, ct.affine, ScanMetadata(source="chest_ct_body_lungs.nii.gz"))


def test_real_label_maps_keep_their_volume(backend):
    volume = _real_labels()
    meshes = label_meshes(volume, backend=backend)
    assert [m.value for m in meshes] == [1, 2]
    body, lungs = meshes
    assert lungs.voxel_volume_mm3 > 2e6  # organ-sized: litres
    for mesh in meshes:
        assert mesh.volume_mm3 == pytest.approx(mesh.voxel_volume_mm3, rel=0.02)
        assert np.all(edge_uses(mesh.faces) == 2)
    # the filter alone, without keep_volume, within 2 % on these organ-sized labels too
    for mesh in label_meshes(volume, backend=backend, keep=False):
        assert mesh.volume_mm3 == pytest.approx(mesh.voxel_volume_mm3, rel=0.02)


def test_the_sample_tumour_a_small_label_on_5_mm_slices(backend):
    from napari_medseg.io.reader import read_scan
    from napari_medseg.samples import sample_path

    labels = read_scan(sample_path("chest_ct_tumour"))
    (tumour,) = label_meshes(labels, backend=backend)
    (filtered,) = label_meshes(labels, backend=backend, keep=False)
    # 221 voxels, 1.44 mL, on 4 slices of 5 mm: the low-pass filter alone takes a fifth
    # of it; keep_volume gives it back as a layer under half a voxel thick
    assert tumour.voxel_volume_mm3 == pytest.approx(1438.0, rel=1e-3)
    assert filtered.volume_mm3 < 0.9 * tumour.voxel_volume_mm3
    assert tumour.volume_mm3 == pytest.approx(tumour.voxel_volume_mm3, rel=1e-3)
    assert np.all(edge_uses(tumour.faces) == 2)


def test_without_vtk_the_skimage_backend_is_the_default_and_works():
    """A fresh interpreter where ``vtkmodules`` cannot be imported (as without the mesh
    extra): the fallback is chosen and meshes a label map."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['vtkmodules'] = None\n"
        "import numpy as np\n"
        "from napari_medseg.labels import mesh\n"
        "from napari_medseg.volume import Volume\n"
        "array = np.zeros((12, 12, 12), np.uint8); array[3:9, 4:8, 2:10] = 4\n"
        "(m,) = mesh.label_meshes(Volume(array, np.diag([0.8, 0.9, 2.0, 1.0])))\n"
        "print(mesh.vtk_available(), mesh.default_backend(), m.value,\n"
        "      round(m.volume_mm3 / m.voxel_volume_mm3, 4))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "skimage", "4", "1.0"]
