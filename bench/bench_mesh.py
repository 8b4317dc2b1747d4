"""3D models of labels: ``label_meshes`` against marching cubes + smoothing on the full volume.

Input: a 512 x 512 x 300 label map with 10 organ-sized labels (``bench/_data/mesh/``,
made once, about 40 s): the liver, spleen and kidneys of the synthetic phantom (seed 0,
drawn on that grid as ``bench_prompt.py``'s timing case; its tumours merged into the
liver, its body label cleared) and six smooth ellipsoid "organs" inside the body,
LPS-stored, 0.87 x 0.84 x 0.65 mm.

Compared, in one process, one after the other on the same map:

* **ours**: :func:`napari_medseg.labels.mesh.label_meshes` with its defaults (the
  default backend, each label in its bounding box, 20 smoothing iterations);
* **peer**: what one writes without it: for each label, ``skimage.measure.marching_cubes``
  of ``labels == value`` on the full volume (padded with one voxel so a label at the
  scan's edge is closed; ``spacing`` = the voxel size), then the same 20-iteration
  windowed-sinc smoothing (:func:`~napari_medseg.labels.mesh.smooth_windowed_sinc`).

Both build all 10 meshes; the best of ``--rounds`` wall-clock times is kept, and the
mesh volumes are checked against the voxel volume of each label. ``--backends`` also
prints the backend table of ``labels/mesh.py``'s docstring: each backend (and VTK's
SurfaceNets for comparison) on analytic spheres and ellipsoids and on three phantom
organs: time, volume error, mean distance from the true surface.

Usage::

    python bench/bench_mesh.py                    # print the table
    python bench/bench_mesh.py --write-results    # ... and append it to RESULTS.md
    python bench/bench_mesh.py --backends         # the backend-choice table too
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "_data" / "mesh"
SMOOTH = 20

sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))

#: Extra "organs": (name, centre offset from the body centre in RAS mm, semi-axes mm).
EXTRA_ORGANS = (
    ("stomach", (-60.0, 40.0, 30.0), (45.0, 30.0, 35.0)),
    ("pancreas", (0.0, 20.0, -10.0), (60.0, 14.0, 12.0)),
    ("gallbladder", (55.0, 45.0, -20.0), (15.0, 20.0, 30.0)),
    ("bladder", (0.0, 40.0, -60.0), (35.0, 28.0, 25.0)),
    ("duodenum", (30.0, 25.0, 10.0), (14.0, 14.0, 40.0)),
    ("aorta", (5.0, -10.0, 0.0), (11.0, 11.0, 80.0)),
)


def make_labels() -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """(labels uint8 (I, J, K), affine, names): see the module docstring."""
    path = DATA / "labels-512.npz"
    if path.exists():
        data = np.load(path, allow_pickle=False)
        names = dict(zip(data["values"].tolist(), data["names"].tolist(), strict=True))
        return data["labels"], data["affine"], names
    from bench_prompt import phantom_512

    from napari_medseg.synthetic.phantom import BODY, PHANTOM_LABELS, TUMOUR

    phantom = phantom_512(0)
    labels = np.asarray(phantom.labels.array).copy()
    affine = phantom.labels.affine
    body = labels == BODY
    labels[labels == TUMOUR] = 2  # the liver's lesions: liver
    names = {c.value: c.name for c in PHANTOM_LABELS if c.value not in (0, BODY, TUMOUR)}
    ijk = np.argwhere(body)
    centre = affine[:3, :3] @ ijk.mean(axis=0) + affine[:3, 3]
    inverse = np.linalg.inv(affine)
    for value, (name, offset, semi) in enumerate(EXTRA_ORGANS, start=TUMOUR):
        middle = centre + np.array(offset)
        signs = np.array(list(itertools.product((-1.0, 1.0), repeat=3)))
        corners = middle + signs * np.array(semi)  # the box around the ellipsoid, RAS
        box_ijk = corners @ inverse[:3, :3].T + inverse[:3, 3]
        low = np.clip(np.floor(box_ijk.min(axis=0)).astype(int), 0, None)
        high = np.minimum(np.ceil(box_ijk.max(axis=0)).astype(int) + 1, labels.shape)
        box = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
        grid = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij"), -1)
        ras = grid @ affine[:3, :3].T + affine[:3, 3]
        inside = (((ras - middle) / semi) ** 2).sum(axis=-1) <= 1.0
        region = labels[box]
        region[inside & body[box]] = value  # inside the body, never over another organ
        names[value] = name
    labels[labels == BODY] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.array(sorted(names))
    np.savez(path, labels=labels, affine=affine, values=values, names=[names[v] for v in values])
    return labels, affine, names


def peer_meshes(labels: np.ndarray, affine: np.ndarray, values) -> list[tuple]:
    """Marching cubes of each label on the full volume, then the same smoothing (in mm)."""
    from skimage.measure import marching_cubes

    from napari_medseg.labels.mesh import smooth_windowed_sinc

    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    out = []
    for value in values:
        # float32: what skimage computes in; padded, so a label at the scan's edge is closed
        mask = np.pad((labels == value).astype(np.float32), 1)
        vertices, faces, _, _ = marching_cubes(mask, 0.5, spacing=tuple(spacing))
        out.append((value, smooth_windowed_sinc(vertices, faces, SMOOTH), faces))
    return out


def timed(call, rounds: int):
    best, result = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - start)
    return best, result


def compare(rounds: int) -> dict:
    from napari_medseg.labels.mesh import default_backend, label_meshes, mesh_volume_mm3
    from napari_medseg.volume import Volume

    labels, affine, names = make_labels()
    volume = Volume(labels, affine)
    values = sorted(names)
    label_meshes(Volume(labels[:40, :40, :40], affine))  # imports (VTK's too) out of the timing
    ours_s, ours = timed(lambda: label_meshes(volume), rounds)
    peer_s, peer = timed(lambda: peer_meshes(labels, affine, values), rounds)
    voxel_mm3 = abs(np.linalg.det(affine[:3, :3]))
    rows = []
    for mesh, (value, vertices, faces) in zip(ours, peer, strict=True):
        assert mesh.value == value
        voxels = mesh.voxel_volume_mm3
        rows.append(
            {
                "value": value,
                "name": names[value],
                "ml": voxels / 1000,
                "ours_error": mesh.volume_mm3 / voxels - 1,
                "peer_error": abs(mesh_volume_mm3(vertices, faces)) / voxels - 1,
                "triangles": len(mesh.faces),
            }
        )
        assert voxels == np.count_nonzero(labels == value) * voxel_mm3
    return {
        "ours_s": ours_s,
        "peer_s": peer_s,
        "rows": rows,
        "backend": default_backend(),
        "spacing": np.sqrt((affine[:3, :3] ** 2).sum(axis=0)),
    }


# ------------------------------------------------------------------ backend table


def _surfacenets(mask: np.ndarray, affine: np.ndarray):
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkFiltersCore import vtkSurfaceNets3D

    from napari_medseg.labels.mesh import mesh_volume_mm3

    padded = np.pad(mask, 1).astype(np.uint8)
    image = vtkImageData()
    image.SetDimensions(*padded.shape)
    image.GetPointData().SetScalars(numpy_to_vtk(padded.ravel(order="F"), deep=1))
    nets = vtkSurfaceNets3D()
    nets.SetInputData(image)
    nets.SetLabel(0, 1)
    nets.SetBackgroundLabel(0)
    nets.SetOutputMeshTypeToTriangles()
    nets.SetNumberOfIterations(SMOOTH)
    nets.Update()
    out = nets.GetOutput()
    vertices = vtk_to_numpy(out.GetPoints().GetData()).astype(float) - 1.0
    faces = vtk_to_numpy(out.GetPolys().GetConnectivityArray()).reshape(-1, 3)
    # outward in index space, then through the affine (a mirroring one turns it inwards)
    if (mesh_volume_mm3(vertices, faces) < 0) != (np.linalg.det(affine[:3, :3]) < 0):
        faces = faces[:, ::-1]
    return vertices @ affine[:3, :3].T + affine[:3, 3], faces


def backend_table() -> list[str]:
    from labels.test_mesh import CASES, Ellipsoid, draw

    from napari_medseg.labels.mesh import label_boxes, label_meshes, mesh_volume_mm3, vtk_available
    from napari_medseg.volume import Volume

    backends = ["vtk", "skimage"] if vtk_available() else ["skimage"]
    cases = dict(CASES)
    cases["sphere r 30 mm, RAS, 1 mm"] = (Ellipsoid((0, 0, 0), (30, 30, 30)), "RAS", (1, 1, 1), 0)
    cases["small sphere r 10 mm, LPS, 0.8x0.8x5 mm"] = (
        Ellipsoid((0, 0, 0), (10, 10, 10)), "LPS", (0.8, 0.8, 5.0), 0,
    )  # fmt: skip
    lines = [
        "| case | backend | ms | filter alone vs voxels | mesh vs shape | mean distance to "
        "shape mm |",
        "|---|---|---|---|---|---|",
    ]
    label_meshes(draw(*cases["sphere r 30 mm, RAS, 1 mm"][:3]))  # imports out of the timing
    for name, (shape, axcodes, spacing, rotation) in cases.items():
        volume = draw(shape, axcodes, spacing, rotation or (0.0, 0.0, 0.0))
        for backend in [*backends, "surfacenets"] if vtk_available() else backends:
            start = time.perf_counter()
            if backend == "surfacenets":
                vertices, faces = _surfacenets(volume.array == 1, volume.affine)
                voxels = np.count_nonzero(volume.array) * abs(np.linalg.det(volume.affine[:3, :3]))
            else:
                (mesh,) = label_meshes(volume, backend=backend)
                vertices, faces, voxels = mesh.vertices, mesh.faces, mesh.voxel_volume_mm3
            ms = 1000 * (time.perf_counter() - start)
            enclosed = mesh_volume_mm3(vertices, faces)
            alone = enclosed
            if backend != "surfacenets":
                (bare,) = label_meshes(volume, backend=backend, keep=False)
                alone = bare.volume_mm3
            lines.append(
                f"| {name} | {backend} | {ms:.0f} | {100 * (alone / voxels - 1):+.2f} % | "
                f"{100 * (enclosed / shape.volume_mm3 - 1):+.2f} % | "
                f"{shape.distance_mm(np.asarray(vertices, float)).mean():.3f} |"
            )
    labels, affine, names = make_labels()
    boxes = label_boxes(labels, [2, 3, 4])
    for value in (2, 3, 4):
        crop = labels[boxes[value]]
        corner = np.array([s.start for s in boxes[value]])
        local = affine.copy()
        local[:3, 3] = affine[:3, :3] @ corner + affine[:3, 3]
        volume = Volume(np.where(crop == value, 1, 0).astype(np.uint8), local)
        for backend in [*backends, "surfacenets"] if vtk_available() else backends:
            start = time.perf_counter()
            if backend == "surfacenets":
                vertices, faces = _surfacenets(volume.array == 1, local)
                voxels = np.count_nonzero(volume.array) * abs(np.linalg.det(local[:3, :3]))
            else:
                (mesh,) = label_meshes(volume, backend=backend)
                voxels = mesh.voxel_volume_mm3
            ms = 1000 * (time.perf_counter() - start)
            if backend != "surfacenets":  # the filter alone
                (bare,) = label_meshes(volume, backend=backend, keep=False)
                vertices, faces = bare.vertices, bare.faces
            error = mesh_volume_mm3(vertices, faces) / voxels - 1
            lines.append(
                f"| phantom {names[value]} ({voxels / 1000:.0f} mL) | {backend} | {ms:.0f} | "
                f"{100 * error:+.2f} % | | |"
            )
    return lines


# ------------------------------------------------------------------ report


def report(result: dict, info: dict, argv: list[str], table: list[str] | None) -> str:
    from _results import heading

    import napari_medseg.labels.mesh as meshing

    vtk_version = "not installed"
    if meshing.vtk_available():
        from vtkmodules.vtkCommonCore import vtkVersion

        vtk_version = vtkVersion.GetVTKVersion()
    import skimage

    ratio = result["ours_s"] / result["peer_s"]
    spacing = " x ".join(f"{s:.2f}" for s in result["spacing"])
    lines = [
        heading("3D models of labels, label_meshes vs marching cubes + smoothing"),
        "",
        f"`python bench/bench_mesh.py {shlex.join(argv)}`".replace(" `", "`"),
        "",
        f"Machine: {info['cpu']}, {info['cores']}, {info['ram']} RAM. Commit {info['commit']}. "
        f"Python {info['python']}, VTK {vtk_version}, scikit-image {skimage.__version__}. "
        f"Load average (1 min) at the start: {os.getloadavg()[0]:.2f}.",
        "",
        f"10 organ-sized labels on a 512 x 512 x 300 map ({spacing} mm, LPS), {SMOOTH} "
        f"smoothing iterations. Ours: `label_meshes`, backend `{result['backend']}`, each label "
        "in its bounding box. Peer: `skimage.measure.marching_cubes(labels == value)` on the "
        "full volume + the same windowed-sinc smoothing, label by label.",
        "",
        "| | all 10 labels, s | ratio ours / peer | goal |",
        "|---|---|---|---|",
        f"| ours | {result['ours_s']:.2f} | {ratio:.2f} | < 5 s |",
        f"| peer | {result['peer_s']:.2f} | | |",
        "",
        "| label | mL | triangles (ours) | mesh vs voxel volume, ours | peer |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['value']} {row['name']} | {row['ml']:.0f} | {row['triangles']} | "
            f"{100 * row['ours_error']:+.2f} % | {100 * row['peer_error']:+.2f} % |"
        )
    if table:
        lines += ["", "Backend choice (one label each, one process):", "", *table]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="runs per side (best time kept)")
    parser.add_argument("--backends", action="store_true", help="also the backend-choice table")
    parser.add_argument("--write-results", action="store_true", help="append to RESULTS.md")
    args = parser.parse_args(argv)
    from bench_dicom_load import machine_info

    info = machine_info()
    result = compare(args.rounds)
    table = backend_table() if args.backends else None
    text = report(result, info, sys.argv[1:] if argv is None else argv, table)
    print(text)
    if args.write_results:
        from _results import append_text

        append_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
