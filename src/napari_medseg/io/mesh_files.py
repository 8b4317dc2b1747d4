"""Triangle meshes as the files 3D tools read: STL, OBJ, PLY and legacy VTK.

:func:`write_mesh` writes one mesh (vertices in mm, triangles wound counter-clockwise
seen from outside, as :mod:`napari_medseg.labels.mesh` makes them) in the format its
file name or ``fmt`` says:

========  ==========================================================================
``stl``   binary STL: 80-byte header, one facet normal and three float32 vertices per
          triangle (little endian); what 3D printing and most CAD tools take
``obj``   Wavefront OBJ text: ``v x y z`` lines, then ``f a b c`` (1-based)
``ply``   PLY ``binary_little_endian 1.0``: float32 ``x y z``, faces as a uchar count
          and int32 indices
``vtk``   VTK legacy polydata, ``BINARY`` (big endian, as the format prescribes):
          ``POINTS`` float, ``POLYGONS``; read by ParaView, VTK and 3D Slicer
========  ==========================================================================

Coordinates are RAS+ mm (nibabel's, 3D Slicer's world) or, with ``lps=True``, DICOM
LPS+ mm (ITK's and most DICOM tools'): x and y negated, a half turn about the z axis,
so the triangles keep their outward winding.

Every file is written through :func:`napari_medseg.io.atomic.atomic_output`: never half
a file, never over an existing file unless ``overwrite``.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from napari_medseg.errors import ScanWriteError

#: The formats :func:`write_mesh` writes, by file ending.
MESH_FORMATS = ("stl", "obj", "ply", "vtk")


def mesh_format_for(path: str | PathLike) -> str:
    """The format a file name asks for (its ending, without the dot, lower case).

    Raises
    ------
    ScanWriteError
        The ending is not one of :data:`MESH_FORMATS`.
    """
    ending = Path(path).suffix.lower().lstrip(".")
    if ending not in MESH_FORMATS:
        raise ScanWriteError(
            path,
            f"is not a mesh file name this package writes ({ending or 'no ending'}).",
            f"End it in one of {', '.join('.' + f for f in MESH_FORMATS)}.",
        )
    return ending


def mesh_file_name(value: int, name: str, fmt: str) -> str:
    """``<value>_<name>.<fmt>`` with the name made safe for any file system
    (:func:`napari_medseg.io.atomic.safe_name`; ``label_<value>`` when nothing is left).

    ``mesh_file_name(3, "left kidney", "stl")`` -> ``"3_left_kidney.stl"``.
    """
    from napari_medseg.io.atomic import safe_name

    return f"{int(value)}_{safe_name(name, f'label_{int(value)}')}.{fmt}"


def _header_text(header: str, limit: int) -> str:
    """``header`` on one printable ASCII line of at most ``limit`` characters."""
    text = "".join(c if " " <= c <= "~" else "_" for c in str(header))
    return text[:limit]


def _stl(vertices: np.ndarray, faces: np.ndarray, header: str) -> bytes:
    triangles = vertices[faces]  # (M, 3, 3)
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)
    record = np.dtype([("normal", "<f4", 3), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])
    rows = np.zeros(len(faces), dtype=record)
    rows["normal"] = normals
    rows["corners"] = triangles
    # a binary STL must not start with "solid" (readers would take it for ASCII)
    title = _header_text(f"napari-medseg {header}".strip(), 80).encode("ascii")
    return title.ljust(80, b" ") + np.uint32(len(faces)).tobytes() + rows.tobytes()


def _obj(vertices: np.ndarray, faces: np.ndarray, header: str) -> bytes:
    lines = [f"# {_header_text(header, 200)}\n" if header else "", f"o {_obj_name(header)}\n"]
    lines.append(("v %.6f %.6f %.6f\n" * len(vertices)) % tuple(vertices.ravel().tolist()))
    lines.append(("f %d %d %d\n" * len(faces)) % tuple((faces.ravel() + 1).tolist()))
    return "".join(lines).encode("ascii")


def _obj_name(header: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in header) or "mesh"


def _ply(vertices: np.ndarray, faces: np.ndarray, header: str) -> bytes:
    head = [
        "ply",
        "format binary_little_endian 1.0",
        f"comment {_header_text(header, 200)}" if header else "",
        f"element vertex {len(vertices)}",
        "property float x",
        "property float y",
        "property float z",
        f"element face {len(faces)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    text = "\n".join(line for line in head if line) + "\n"
    record = np.dtype([("count", "u1"), ("indices", "<i4", 3)])
    rows = np.empty(len(faces), dtype=record)
    rows["count"] = 3
    rows["indices"] = faces
    return text.encode("ascii") + vertices.astype("<f4").tobytes() + rows.tobytes()


def _vtk(vertices: np.ndarray, faces: np.ndarray, header: str) -> bytes:
    title = _header_text(header or "napari-medseg mesh", 255)
    polygons = np.empty((len(faces), 4), dtype=">i4")
    polygons[:, 0] = 3
    polygons[:, 1:] = faces
    return b"".join(
        (
            f"# vtk DataFile Version 3.0\n{title}\nBINARY\nDATASET POLYDATA\n".encode("ascii"),
            f"POINTS {len(vertices)} float\n".encode("ascii"),
            vertices.astype(">f4").tobytes(),
            f"\nPOLYGONS {len(faces)} {polygons.size}\n".encode("ascii"),
            polygons.tobytes(),
            b"\n",
        )
    )


_WRITERS = {"stl": _stl, "obj": _obj, "ply": _ply, "vtk": _vtk}


def write_mesh(
    path: str | PathLike,
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    fmt: str | None = None,
    lps: bool = False,
    header: str = "",
    overwrite: bool = False,
) -> Path:
    """Write one triangle mesh as STL, OBJ, PLY or legacy VTK.

    Parameters
    ----------
    path : path
        Output file.
    vertices : numpy.ndarray
        Shape ``(N, 3)``: RAS+ mm ``(x, y, z)``; written as float32.
    faces : numpy.ndarray
        Shape ``(M, 3)``: vertex indices, counter-clockwise seen from outside.
    fmt : {"stl", "obj", "ply", "vtk"}, optional
        Default: :func:`mesh_format_for` the file name.
    lps : bool
        Write DICOM LPS+ mm (x and y negated) instead of RAS+.
    header : str
        A name or note kept in the file's header or comment (ASCII; others become
        ``_``).
    overwrite : bool
        Replace an existing file (else it is refused).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ScanWriteError
        An unknown format, vertices or faces of the wrong shape, a face naming a vertex
        that does not exist, ``path`` exists and ``overwrite`` is False
        (:class:`~napari_medseg.io.atomic.TargetExistsError`), or an OS error while
        writing; each names the file.
    """
    from napari_medseg.io.atomic import atomic_output

    path = Path(path)
    fmt = (fmt or mesh_format_for(path)).lower()
    if fmt not in _WRITERS:
        raise ScanWriteError(path, f"unknown mesh format {fmt!r}; use one of {MESH_FORMATS}.")
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ScanWriteError(
            path,
            f"a mesh is vertices (N, 3) and triangles (M, 3); got {vertices.shape} and "
            f"{faces.shape}.",
        )
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ScanWriteError(path, f"a triangle names a vertex outside 0..{len(vertices) - 1}.")
    if lps:
        vertices = vertices * np.array([-1.0, -1.0, 1.0])
    data = _WRITERS[fmt](vertices.astype(np.float32), faces.astype(np.int64), header)
    with atomic_output(path, exclusive=not overwrite) as temporary:
        temporary.write_bytes(data)
    return path


__all__ = ["MESH_FORMATS", "mesh_file_name", "mesh_format_for", "write_mesh"]
