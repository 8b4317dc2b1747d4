"""Readers of mesh files written from the format specifications with numpy and ``struct``
only (independent of ``napari_medseg.io.mesh_files``): ``(vertices, faces[, normals])``."""

from __future__ import annotations

import struct

import numpy as np


def read_stl(data: bytes):
    (count,) = struct.unpack_from("<I", data, 80)
    assert len(data) == 84 + 50 * count
    rows = np.frombuffer(
        data, dtype=np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]), offset=84
    )
    vertices = rows["v"].reshape(-1, 3)
    return vertices, np.arange(3 * count).reshape(-1, 3), rows["n"]


def read_obj(data: bytes):
    vertices, faces = [], []
    for line in data.decode("ascii").splitlines():
        parts = line.split()
        if parts and parts[0] == "v":
            vertices.append([float(p) for p in parts[1:4]])
        elif parts and parts[0] == "f":
            faces.append([int(p.split("/")[0]) - 1 for p in parts[1:]])
    return np.array(vertices), np.array(faces)


def read_ply(data: bytes):
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[:2] == ["ply", "format binary_little_endian 1.0"]
    counts = {
        line.split()[1]: int(line.split()[2]) for line in header if line.startswith("element")
    }
    vertices = np.frombuffer(data, "<f4", 3 * counts["vertex"], end).reshape(-1, 3)
    rows = np.frombuffer(
        data, np.dtype([("n", "u1"), ("i", "<i4", 3)]), counts["face"], end + vertices.nbytes
    )
    assert np.all(rows["n"] == 3)
    return vertices, rows["i"]


def read_vtk(data: bytes):
    lines = data.split(b"\n", 4)
    assert lines[0] == b"# vtk DataFile Version 3.0" and lines[2] == b"BINARY"
    at = data.index(b"POINTS ")
    head_end = data.index(b"\n", at)
    count = int(data[at:head_end].split()[1])
    vertices = np.frombuffer(data, ">f4", 3 * count, head_end + 1).reshape(-1, 3)
    at = data.index(b"POLYGONS ", head_end + 1 + vertices.nbytes)
    head_end = data.index(b"\n", at)
    faces_count, size = (int(v) for v in data[at:head_end].split()[1:3])
    rows = np.frombuffer(data, ">i4", size, head_end + 1).reshape(faces_count, 4)
    assert np.all(rows[:, 0] == 3)
    return vertices, rows[:, 1:]


NUMPY_READERS = {"stl": read_stl, "obj": read_obj, "ply": read_ply, "vtk": read_vtk}
