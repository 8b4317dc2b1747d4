"""Mesh files (io/mesh_files.py): each format read back by an independent reader.

VTK's own readers (vtkSTLReader, vtkOBJReader, vtkPLYReader, vtkPolyDataReader) when
the ``vtk`` package is installed (the test extra installs it); byte-level parsing with
numpy (``struct`` layouts from the format specifications) always. Checked: the same
vertices (float32) and triangles, the RAS -> LPS flip (x and y negated, the triangles
still wound outwards), atomic and never over an existing file.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from mesh_readers import NUMPY_READERS, read_stl

from napari_medseg.errors import ScanWriteError
from napari_medseg.io.mesh_files import MESH_FORMATS, mesh_file_name, mesh_format_for, write_mesh
from napari_medseg.labels.mesh import mesh_volume_mm3

#: An octahedron around (10, -20, 30) mm with a different reach along each axis, its
#: triangles counter-clockwise seen from outside.
VERTICES = np.array(
    [[14, -20, 30], [6, -20, 30], [10, -15, 30], [10, -25, 30], [10, -20, 36], [10, -20, 24]],
    dtype=float,
)
FACES = np.array(
    [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
)


def test_the_octahedron_is_wound_outwards():
    assert mesh_volume_mm3(VERTICES, FACES) == pytest.approx(4 * 5 * 6 * 8 / 6)  # 4/3 a b c


# ------------------------------------------------------------------ independent readers


def _vtk_read(path, fmt: str):
    from vtkmodules.util.numpy_support import vtk_to_numpy

    if fmt == "stl":
        from vtkmodules.vtkIOGeometry import vtkSTLReader as Reader
    elif fmt == "obj":
        from vtkmodules.vtkIOGeometry import vtkOBJReader as Reader
    elif fmt == "ply":
        from vtkmodules.vtkIOPLY import vtkPLYReader as Reader
    else:
        from vtkmodules.vtkIOLegacy import vtkPolyDataReader as Reader
    reader = Reader()
    reader.SetFileName(str(path))
    if fmt == "stl":
        reader.ScalarTagsOff()
    reader.Update()
    mesh = reader.GetOutput()
    vertices = vtk_to_numpy(mesh.GetPoints().GetData())
    faces = vtk_to_numpy(mesh.GetPolys().GetConnectivityArray()).reshape(-1, 3)
    return vertices, faces


def _same_triangles(vertices, faces, expected_vertices, expected_faces):
    """Same triangles, same winding (vertex order may differ, e.g. STL merged by a reader)."""
    got = np.asarray(vertices, float)[np.asarray(faces)]
    want = np.asarray(expected_vertices, float)[np.asarray(expected_faces)]
    assert got.shape == want.shape

    # each triangle as its three corners from its smallest corner on, keeping the winding
    def canonical(tri):
        out = []
        for corners in tri:
            start = min(range(3), key=lambda i: tuple(corners[i]))
            out.append(np.roll(corners, -start, axis=0).ravel())
        return np.array(sorted(map(tuple, np.round(out, 4))))

    np.testing.assert_allclose(canonical(got), canonical(want), atol=1e-4)


@pytest.mark.parametrize("fmt", MESH_FORMATS)
def test_each_format_reads_back_with_numpy(tmp_path, fmt):
    path = write_mesh(tmp_path / f"mesh.{fmt}", VERTICES, FACES, header="label 2 liver")
    vertices, faces = NUMPY_READERS[fmt](path.read_bytes())[:2]
    _same_triangles(vertices, faces, VERTICES, FACES)
    assert mesh_volume_mm3(np.asarray(vertices, float), faces) == pytest.approx(40.0 * 4, rel=1e-6)


@pytest.mark.parametrize("fmt", MESH_FORMATS)
def test_each_format_reads_back_with_vtk(tmp_path, fmt):
    pytest.importorskip("vtkmodules.vtkIOLegacy")
    path = write_mesh(tmp_path / f"mesh.{fmt}", VERTICES, FACES, header="label 2 liver")
    vertices, faces = _vtk_read(path, fmt)
    _same_triangles(vertices, faces, VERTICES, FACES)
    assert mesh_volume_mm3(np.asarray(vertices, float), faces) > 0


def test_stl_normals_point_outwards_and_the_header_is_not_ascii_stl(tmp_path):
    path = write_mesh(tmp_path / "m.stl", VERTICES, FACES, header="label 2 liver (RAS mm)")
    data = path.read_bytes()
    assert not data.startswith(b"solid")  # readers would take it for ASCII STL
    assert b"label 2 liver (RAS mm)" in data[:80]
    corners, _, normals = read_stl(data)
    centroids = corners.reshape(-1, 3, 3).mean(axis=1)
    assert np.all(np.einsum("ij,ij->i", normals, centroids - [10, -20, 30]) > 0)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("fmt", MESH_FORMATS)
def test_lps_negates_x_and_y_and_keeps_the_winding(tmp_path, fmt):
    path = write_mesh(tmp_path / f"lps.{fmt}", VERTICES, FACES, lps=True)
    vertices, faces = NUMPY_READERS[fmt](path.read_bytes())[:2]
    _same_triangles(vertices, faces, VERTICES * [-1, -1, 1], FACES)
    assert mesh_volume_mm3(np.asarray(vertices, float), faces) == pytest.approx(160.0, rel=1e-6)


def test_existing_files_are_kept_unless_overwrite(tmp_path):
    path = tmp_path / "m.ply"
    path.write_bytes(b"mine")
    with pytest.raises(ScanWriteError, match=r"m\.ply: exists already"):
        write_mesh(path, VERTICES, FACES)
    assert path.read_bytes() == b"mine"
    write_mesh(path, VERTICES, FACES, overwrite=True)
    assert path.read_bytes().startswith(b"ply\n")
    assert [p.name for p in tmp_path.iterdir()] == ["m.ply"]  # no temporary file left


def test_bad_names_and_meshes_are_refused_naming_the_file(tmp_path):
    with pytest.raises(ScanWriteError, match=r"m\.stp: is not a mesh file name.*\.stl"):
        write_mesh(tmp_path / "m.stp", VERTICES, FACES)
    with pytest.raises(ScanWriteError, match=r"m\.stl: a mesh is vertices"):
        write_mesh(tmp_path / "m.stl", VERTICES[:, :2], FACES)
    with pytest.raises(ScanWriteError, match=r"m\.stl: a triangle names a vertex outside 0\.\.5"):
        write_mesh(tmp_path / "m.stl", VERTICES, FACES + 1)
    assert not os.listdir(tmp_path)
    assert mesh_format_for("A.STL") == "stl"
    assert write_mesh(tmp_path / "any.name", VERTICES, FACES, fmt="obj").read_bytes()[:1] == b"o"


def test_file_names_are_value_and_a_safe_name():
    assert mesh_file_name(3, "left kidney", "stl") == "3_left_kidney.stl"
    assert mesh_file_name(12, "../../etc/passwd", "obj") == "12_etc_passwd.obj"
    assert mesh_file_name(4, "Niere (links) / ü", "ply") == "4_Niere_links.ply"
    assert mesh_file_name(5, "", "vtk") == "5_label_5.vtk"
    assert mesh_file_name(6, "...", "vtk") == "6_label_6.vtk"
