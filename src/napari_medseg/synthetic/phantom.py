"""Deterministic synthetic abdomen-like CT phantoms, for tests, demos and model training.

:func:`make_phantom` draws everything from one integer seed: the same seed always gives
bit-identical voxels, labels and affine. A phantom is an abdominal CT slab (upper
abdomen, from the liver dome down past the kidneys) with:

* air around an elliptical body whose size, shape, taper and position vary, a
  subcutaneous fat rim and a muscle wall, soft-tissue background with smooth texture
  and bowel loops (gas or fluid), optionally a patient table under the back;
* a spine (vertebral body and posterior elements, bone HU) and an aorta;
* liver (patient right), spleen (patient left, posterior), right and left kidney
  (posterior, either side of the spine, cortex and medulla), each a randomly rotated,
  smoothly deformed ellipsoid;
* 0-4 liver lesions (hypo- or hyper-dense) and sometimes one kidney lesion;
* a contrast phase that sets organ HU together, Gaussian noise and partial-volume
  edges;
* varying voxel spacing, field of view and voxel storage order, with the affine right
  so the anatomy is always in the same place in patient space.

Coordinates
-----------
Shapes are computed in RAS+ patient millimetres (nibabel's convention): x points to
the patient's Right, y to Anterior, z to Superior. So the liver, on the patient's
right, has x > 0 in RAS mm and the spleen, on the patient's left, x < 0. (DICOM LPS+
is the same frame with x and y negated: there the liver has x < 0.) Every shape is
evaluated directly on the final voxel grid from these coordinates (no resampling), in
an axis-aligned RAS array that is then flipped/transposed into the stored voxel order
with the matching affine.

Label values are listed in :data:`PHANTOM_LABELS`; the default models use the same
table. Label 1 (body) is everything inside the skin that is not one of the organs:
fat, muscle, bowel, vessels and bone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from napari_medseg.labels.classes import LabelClass
from napari_medseg.synthetic.shapes import (
    Blob,
    Grid,
    edge_fraction,
    paint,
    random_blob,
    rotation_z,
    smooth_texture,
)
from napari_medseg.volume import ScanMetadata, Volume

#: Label classes of the phantom (and of the default models), background included.
PHANTOM_LABELS: tuple[LabelClass, ...] = (
    LabelClass(0, "background", (0, 0, 0)),
    LabelClass(1, "body", (241, 214, 145)),
    LabelClass(2, "liver", (221, 130, 101)),
    LabelClass(3, "spleen", (157, 108, 162)),
    LabelClass(4, "right kidney", (60, 180, 75)),
    LabelClass(5, "left kidney", (111, 184, 210)),
    LabelClass(6, "tumour", (230, 25, 75)),
)

BACKGROUND, BODY, LIVER, SPLEEN, RIGHT_KIDNEY, LEFT_KIDNEY, TUMOUR = range(7)

#: Voxel storage orders drawn by :func:`make_phantom` (RAS+ axis codes) and their odds.
ORIENTATION_CHOICES: tuple[tuple[str, float], ...] = (
    ("LPS", 0.30),
    ("RAS", 0.15),
    ("LAS", 0.15),
    ("LPI", 0.10),
    ("RPS", 0.10),
    ("PSR", 0.05),
    ("ASL", 0.05),
    ("SLP", 0.05),
    ("IRA", 0.05),
)

#: HU ranges the organs are drawn from (before noise), for tests and the model card.
HU_RANGES: dict[str, tuple[float, float]] = {
    "air": (-1000.0, -1000.0),
    "fat": (-120.0, -80.0),
    "muscle": (35.0, 60.0),
    "soft_tissue": (-10.0, 40.0),
    "liver": (40.0, 110.0),
    "spleen": (40.0, 120.0),
    "kidney_cortex": (100.0, 200.0),
    "bone_cortex": (700.0, 1000.0),
    "bone_cancellous": (400.0, 600.0),
}

#: Value range of the int16 image (HU).
HU_MIN, HU_MAX = -1024, 3071


@dataclass
class Phantom:
    """A synthetic CT and its ground-truth labels on the same voxel grid.

    Attributes
    ----------
    image : Volume
        int16 HU, shape ``(I, J, K)`` in the drawn storage order, affine voxel -> RAS mm.
    labels : Volume
        uint8 label map on the same grid and affine (values of :data:`PHANTOM_LABELS`).
    parameters : dict
        Everything drawn from the seed (JSON-serialisable; keys carry units: ``_mm``,
        ``_hu``, ``_deg``).
    """

    image: Volume
    labels: Volume
    parameters: dict[str, Any] = field(default_factory=dict)


# -- what is drawn from the seed ---------------------------------------------------------


@dataclass
class _Body:
    """The body: a superelliptic cylinder along z with fat rim and muscle wall (mm, HU)."""

    a: float  # left-right semi-axis at the centre, mm
    b: float  # posterior-anterior semi-axis, mm
    power: float  # superellipse exponent (squarer when larger)
    taper: float  # relative size change per 100 mm along z
    centre: np.ndarray  # RAS mm
    fat_mm: float
    muscle_mm: float
    fat_hu: float
    muscle_hu: float
    soft_hu: float
    z_extent: float  # cranio-caudal field of view, mm
    z_shift: float  # field-of-view centre relative to the body centre, mm
    fov_margin: float  # air around the body, mm
    fov_shift: np.ndarray  # where the body sits in the field of view (-1..1, x and y)
    table: bool
    table_gap_mm: float
    table_hu: float

    @property
    def inner_a(self) -> float:
        """Left-right semi-axis inside the muscle wall (room for organs), mm."""
        return self.a - self.fat_mm - self.muscle_mm

    @property
    def inner_b(self) -> float:
        """Posterior-anterior semi-axis inside the muscle wall, mm."""
        return self.b - self.fat_mm - self.muscle_mm


@dataclass
class _Spine:
    """Vertebra (cortex rim, cancellous core, posterior elements) and aorta; labelled body."""

    radius: float  # vertebral body radius, mm
    x: float  # RAS mm of the vertebral body centre
    y: float
    cortex_hu: float
    cancellous_hu: float
    aorta_radius: float
    aorta_hu: float

    @property
    def aorta_xy(self) -> tuple[float, float]:
        """Aorta centre: in front of the spine, slightly to the patient's left (RAS mm)."""
        return (self.x - self.radius * 0.6, self.y + self.radius + self.aorta_radius + 3.0)


@dataclass
class _Organs:
    liver: Blob
    spleen: Blob
    kidneys: list[tuple[Blob, int, float]]  # (shape, label, cortex thickness mm): right, left
    liver_hu: float
    spleen_hu: float
    cortex_hu: float
    medulla_drop_hu: float


@dataclass
class _Lesion:
    host: int  # LIVER, RIGHT_KIDNEY or LEFT_KIDNEY
    radius_mm: float
    delta_hu: float  # relative to the host organ
    pick: np.ndarray  # (3,) uniform draws placing the centre
    shape_seed: int


def _choose_orientation(rng: np.random.Generator) -> str:
    codes = [code for code, _ in ORIENTATION_CHOICES]
    odds = np.array([p for _, p in ORIENTATION_CHOICES])
    return str(codes[rng.choice(len(codes), p=odds / odds.sum())])


def _draw_body(r: np.random.Generator) -> _Body:
    a = float(r.uniform(125.0, 180.0))
    b = float(r.uniform(0.65, 0.82) * a)
    power = float(r.uniform(2.0, 2.8))
    taper = float(r.uniform(-0.08, 0.08))
    centre = np.array([r.uniform(-25, 25), r.uniform(-30, 30), r.uniform(-20, 20)])
    fat_mm = float(r.uniform(5.0, min(35.0, 0.22 * b)))
    return _Body(
        a=a,
        b=b,
        power=power,
        taper=taper,
        centre=centre,
        fat_mm=fat_mm,
        muscle_mm=float(r.uniform(6.0, 14.0)),
        fat_hu=float(r.uniform(*HU_RANGES["fat"])),
        muscle_hu=float(r.uniform(*HU_RANGES["muscle"])),
        soft_hu=float(r.uniform(*HU_RANGES["soft_tissue"])),
        z_extent=float(r.uniform(150.0, 230.0)),
        z_shift=float(r.uniform(-25.0, 25.0)),
        fov_margin=float(r.uniform(10.0, 70.0)),
        fov_shift=r.uniform(-1.0, 1.0, size=2),
        table=bool(r.uniform() < 0.7),
        table_gap_mm=float(r.uniform(0.0, 15.0)),
        table_hu=float(r.uniform(50.0, 300.0)),
    )


def _draw_spine(r: np.random.Generator, body: _Body, phase: float) -> _Spine:
    # the vertebral body radius scales with the body; its centre sits so that the
    # posterior elements (reaching 2.55 radii behind it) end about at the fat rim
    radius = float(np.clip(0.15 * body.b + r.uniform(-2.0, 2.0), 12.0, 22.0))
    cx, cy, _ = body.centre
    y = cy - body.b + body.fat_mm + 2.5 * radius + float(r.uniform(0.0, 8.0))
    x = cx + float(r.uniform(-5.0, 5.0))
    return _Spine(
        radius=radius,
        x=x,
        y=y,
        cortex_hu=float(r.uniform(*HU_RANGES["bone_cortex"])),
        cancellous_hu=float(r.uniform(*HU_RANGES["bone_cancellous"])),
        aorta_radius=float(r.uniform(9.0, 14.0)),
        aorta_hu=float(50.0 + phase * 200.0 + r.uniform(-20, 20)),
    )


def _draw_organs(r: np.random.Generator, body: _Body, spine: _Spine, phase: float) -> _Organs:
    def hu_in(name: str, centre_value: float, jitter: float) -> float:
        low, high = HU_RANGES[name]
        return float(np.clip(centre_value + r.uniform(-jitter, jitter), low, high))

    # contrast phase moves all enhancing organs together
    liver_hu = hu_in("liver", 45.0 + 55.0 * phase, 10.0)
    spleen_hu = hu_in("spleen", 45.0 + 65.0 * phase, 12.0)
    cortex_hu = hu_in("kidney_cortex", 105.0 + 90.0 * phase, 10.0)
    medulla_drop = float(r.uniform(10.0, 70.0))

    cx, cy, cz = body.centre
    inner_a, inner_b = body.inner_a, body.inner_b
    scale = float(np.clip(inner_a / 130.0, 0.75, 1.15))  # organs scale with the body a little
    liver = random_blob(
        r,
        centre=[
            cx + inner_a * r.uniform(0.25, 0.38),
            cy + inner_b * r.uniform(-0.05, 0.15),
            cz + r.uniform(25.0, 45.0),
        ],
        semi=np.array([r.uniform(70, 95), r.uniform(60, 85), r.uniform(65, 90)]) * scale,
        max_rot_deg=(8.0, 8.0, 20.0),
        taper=float(r.uniform(0.2, 0.45)),  # a wedge, thickest laterally (patient right)
        n_waves=3,
        amplitude=0.08,
    )
    spleen = random_blob(
        r,
        centre=[
            cx - inner_a * r.uniform(0.55, 0.7),
            cy - inner_b * r.uniform(0.3, 0.5),
            cz + r.uniform(15.0, 40.0),
        ],
        semi=np.array([r.uniform(20, 32), r.uniform(45, 65), r.uniform(40, 60)]) * scale,
        max_rot_deg=(10.0, 10.0, 25.0),
        n_waves=3,
        amplitude=0.08,
    )
    # the spleen hugs the posterolateral wall: long axis turned about 35 degrees
    spleen.rotation = rotation_z(np.radians(-35.0 + r.uniform(-12, 12))) @ spleen.rotation
    kidneys = []
    for side, label, z_offset in (
        (+1, RIGHT_KIDNEY, (-35.0, -10.0)),  # the right kidney sits lower
        (-1, LEFT_KIDNEY, (-25.0, 0.0)),
    ):
        semi = np.array([r.uniform(22, 30), r.uniform(20, 28), r.uniform(45, 60)]) * scale
        centre = [
            spine.x + side * (spine.radius + semi[0] + r.uniform(12, 28)),
            spine.y + r.uniform(0.0, 15.0),
            cz + r.uniform(*z_offset),
        ]
        blob = random_blob(r, centre, semi, max_rot_deg=(12.0, 12.0, 25.0), amplitude=0.04)
        blob.rotation = rotation_z(side * 0.5) @ blob.rotation
        kidneys.append((blob, label, float(r.uniform(4.0, 8.0))))
    return _Organs(liver, spleen, kidneys, liver_hu, spleen_hu, cortex_hu, medulla_drop)


def _draw_lesions(r: np.random.Generator) -> list[_Lesion]:
    """0-4 liver lesions (radius 4-20 mm, log-uniform; 35 % hyperdense) and, one time
    in five, a hypodense kidney lesion (radius 5-15 mm)."""
    lesions = []
    for _ in range(int(r.choice([0, 1, 1, 2, 2, 3, 4]))):
        radius = float(np.exp(r.uniform(np.log(4.0), np.log(20.0))))
        delta = float(r.uniform(20.0, 60.0) * (1 if r.uniform() < 0.35 else -1))
        lesions.append(_Lesion(LIVER, radius, delta, r.uniform(size=3), int(r.integers(2**31))))
    if r.uniform() < 0.2:
        host = (RIGHT_KIDNEY, LEFT_KIDNEY)[int(r.integers(2))]
        radius = float(r.uniform(5.0, 15.0))
        delta = float(r.uniform(-80.0, -40.0))
        lesions.append(_Lesion(host, radius, delta, r.uniform(size=3), int(r.integers(2**31))))
    return lesions


def _draw_bowel(r: np.random.Generator, body: _Body) -> list[tuple[Blob, float]]:
    """3-8 bowel loops in the anterior abdomen: gas (40 %) or fluid, labelled body."""
    cx, cy, cz = body.centre
    loops = []
    for _ in range(int(r.integers(3, 9))):
        centre = [
            cx + body.inner_a * r.uniform(-0.45, 0.2),
            cy + body.inner_b * r.uniform(0.1, 0.7),
            cz + r.uniform(-80.0, 20.0),
        ]
        semi = [r.uniform(10, 25), r.uniform(10, 22), r.uniform(15, 40)]
        hu = float(r.uniform(-900, -600) if r.uniform() < 0.4 else r.uniform(0, 40))
        loops.append((random_blob(r, centre, semi, amplitude=0.1), hu))
    return loops


def _make_grid(r: np.random.Generator, body: _Body, spacing_mm) -> tuple[Grid, np.ndarray]:
    """The RAS voxel grid (field of view around the body) and its 4x4 affine."""
    sx, sy, sz = (float(v) for v in spacing_mm)
    cx, cy, cz = body.centre
    fov_x = 2 * body.a * (1 + abs(body.taper)) + 2 * body.fov_margin
    fov_y = max(fov_x * r.uniform(0.75, 1.0), 2 * body.b + 2 * body.fov_margin + 40.0)
    nx = int(np.ceil(fov_x / sx))
    ny = int(np.ceil(fov_y / sy))
    nz = max(2, int(round(body.z_extent / sz)))
    # the body is shifted inside the field of view by up to half the margin
    origin = (
        cx - fov_x / 2 + body.fov_shift[0] * body.fov_margin * 0.5,
        cy - body.b - body.fov_margin - 20.0 + body.fov_shift[1] * body.fov_margin * 0.3,
        cz + body.z_shift - body.z_extent / 2,
    )
    grid = Grid(
        x=(origin[0] + sx * np.arange(nx)).astype(np.float32),
        y=(origin[1] + sy * np.arange(ny)).astype(np.float32),
        z=(origin[2] + sz * np.arange(nz)).astype(np.float32),
    )
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = origin
    return grid, affine


# -- painting ------------------------------------------------------------------------------


@dataclass
class _Canvas:
    """The phantom being painted: float32 HU and uint8 labels on an RAS grid."""

    grid: Grid
    image: np.ndarray
    labels: np.ndarray
    edge_mm: float

    def paint(self, box, q, scale_mm: float, hu, label: int | None, within=None) -> None:
        """Paint shape ``q < 1`` (surface distance ``(q - 1) * scale_mm`` mm) in a box."""
        fraction = edge_fraction(q, scale_mm, self.edge_mm)
        paint(self.image, self.labels, box, fraction, hu, label, within=within)


def _paint_body(canvas: _Canvas, body: _Body, texture_rng: np.random.Generator) -> np.ndarray:
    """Air -> fat rim -> muscle wall -> textured soft tissue; returns the abdomen mask
    (inside the muscle wall, where organs may lie), shape of the grid."""
    everything = (slice(None),) * 3
    dx, dy, dz = canvas.grid.offsets(everything, body.centre)
    size = np.float32(1.0) + np.float32(body.taper / 100.0) * dz  # (1, 1, nz)
    power = np.float32(body.power)
    q_body = (
        (np.abs(dx) / np.float32(body.a)) ** power + (np.abs(dy) / np.float32(body.b)) ** power
    ) ** (1 / power)  # (nx, ny, 1)
    q_body = q_body / size  # (nx, ny, nz)
    mean_r = 0.5 * (body.a + body.b)
    canvas.paint(everything, q_body, mean_r, body.fat_hu, BODY)
    inner = (mean_r - body.fat_mm) / mean_r
    canvas.paint(everything, q_body / np.float32(inner), mean_r * inner, body.muscle_hu, None)
    inner = (mean_r - body.fat_mm - body.muscle_mm) / mean_r
    soft = edge_fraction(q_body / np.float32(inner), mean_r * inner, canvas.edge_mm)
    texture = smooth_texture(texture_rng, canvas.grid, everything, 12.0) + np.float32(body.soft_hu)
    paint(canvas.image, canvas.labels, everything, soft, texture, None)
    return soft > 0.5


def _paint_table(canvas: _Canvas, body: _Body) -> None:
    """A 12 mm slab under the patient's back (labelled background)."""
    grid = canvas.grid
    top = body.centre[1] - body.b - body.table_gap_mm
    box = grid.box(
        np.array([grid.x[0], top - 12.0, grid.z[0]]), np.array([grid.x[-1], top, grid.z[-1]])
    )
    if box is not None:
        canvas.image[box] = body.table_hu


def _paint_spine(canvas: _Canvas, spine: _Spine) -> None:
    """Vertebral body (cortex rim, cancellous core), posterior elements, aorta: all body."""
    grid = canvas.grid
    column = grid.box(
        np.array([spine.x - 60, spine.y - 80, grid.z[0]]),
        np.array([spine.x + 60, spine.y + spine.radius + 2 * spine.aorta_radius + 20, grid.z[-1]]),
    )
    if column is None:
        return
    dx, dy, _ = grid.offsets(column, (spine.x, spine.y, 0.0))
    radial = np.sqrt(dx * dx + dy * dy)  # (nx', ny', 1): the same on every slice
    r = spine.radius
    canvas.paint(column, radial / np.float32(r), r, spine.cortex_hu, None)
    canvas.paint(column, radial / np.float32(r - 3.0), r - 3.0, spine.cancellous_hu, None)
    # posterior elements: an ellipse behind the vertebral body
    arch = (0.45 * r, 0.75 * r)
    behind = dy + np.float32(1.8 * r)
    q = np.sqrt((dx / np.float32(arch[0])) ** 2 + (behind / np.float32(arch[1])) ** 2)
    canvas.paint(column, q, float(np.mean(arch)), spine.cortex_hu * 0.8, None)
    ax, ay = spine.aorta_xy
    dxa = dx - np.float32(ax - spine.x)
    dya = dy - np.float32(ay - spine.y)
    q = np.sqrt(dxa * dxa + dya * dya) / np.float32(spine.aorta_radius)
    canvas.paint(column, q, spine.aorta_radius, spine.aorta_hu, None)


def _paint_organs(
    canvas: _Canvas, organs: _Organs, abdomen: np.ndarray, texture_rng: np.random.Generator
) -> dict[int, tuple]:
    """Liver and spleen (textured), then kidneys (cortex and medulla), inside the abdomen.

    Returns label -> (box, q) of each organ painted, for placing lesions.
    """
    fields: dict[int, tuple] = {}
    for blob, hu, label in (
        (organs.liver, organs.liver_hu, LIVER),
        (organs.spleen, organs.spleen_hu, SPLEEN),
    ):
        box, q = blob.field(canvas.grid)
        if box is None:
            continue
        texture = smooth_texture(texture_rng, canvas.grid, box, 4.0, n_waves=3) + np.float32(hu)
        canvas.paint(box, q, blob.distance_scale_mm(), texture, label, within=abdomen[box])
        fields[label] = (box, q)
    for blob, label, cortex_mm in organs.kidneys:
        box, q = blob.field(canvas.grid)
        if box is None:
            continue
        scale_mm = blob.distance_scale_mm()
        canvas.paint(box, q, scale_mm, organs.cortex_hu, label, within=abdomen[box])
        medulla_q = q / np.float32((scale_mm - cortex_mm) / scale_mm)
        canvas.paint(
            box,
            medulla_q,
            scale_mm - cortex_mm,
            organs.cortex_hu - organs.medulla_drop_hu,
            None,
            within=canvas.labels[box] == label,
        )
        fields[label] = (box, q)
    return fields


def _paint_lesion(canvas: _Canvas, lesion: _Lesion, organs: _Organs, fields: dict) -> None:
    """A deformed sphere inside its host organ, centred on a host voxel deep enough inside."""
    if lesion.host not in fields:
        return
    grid, labels = canvas.grid, canvas.labels
    box, q = fields[lesion.host]
    host_mask = labels[box] == lesion.host
    host_blob = organs.liver if lesion.host == LIVER else organs.kidneys[lesion.host - 4][0]
    depth = q < np.float32(
        max(0.35, 1.0 - lesion.radius_mm / (0.8 * float(np.mean(host_blob.semi))))
    )
    candidates = np.argwhere(host_mask & depth)
    if len(candidates) == 0:
        candidates = np.argwhere(host_mask)
    if len(candidates) == 0:
        return
    index = candidates[int(lesion.pick[0] * len(candidates)) % len(candidates)]
    centre = np.array(
        [grid.x[box[0]][index[0]], grid.y[box[1]][index[1]], grid.z[box[2]][index[2]]],
        dtype=float,
    )
    shape_rng = np.random.default_rng(lesion.shape_seed)
    semi = lesion.radius_mm * shape_rng.uniform(0.8, 1.2, size=3)
    blob = random_blob(shape_rng, centre, semi, max_rot_deg=(90, 90, 90), amplitude=0.08)
    lesion_box, lesion_q = blob.field(grid)
    if lesion_box is None:
        return
    host_hu = organs.liver_hu if lesion.host == LIVER else organs.cortex_hu
    within = (labels[lesion_box] == lesion.host) | (labels[lesion_box] == TUMOUR)
    canvas.paint(
        lesion_box, lesion_q, float(np.mean(semi)), host_hu + lesion.delta_hu, TUMOUR, within
    )


# -- the phantom ---------------------------------------------------------------------------


def make_phantom(
    seed: int,
    *,
    spacing: tuple[float | None, float | None, float | None] | None = None,
    orientation: str | None = None,
    noise_sd: float | None = None,
    organ_hu_shift: dict[str, float] | None = None,
) -> Phantom:
    """Make one synthetic abdominal CT with its labels, all drawn from ``seed``.

    Parameters
    ----------
    seed : int
        Seeds a ``numpy.random.Generator``; the same seed gives identical output
        (with the same overrides).
    spacing : tuple of float, optional
        Voxel size ``(left-right, posterior-anterior, inferior-superior)`` in mm,
        overriding the drawn one (in-plane 0.6-1.0 mm, slices 1-5 mm); a None entry
        keeps the drawn value along that axis. The anatomy does not change with it
        (it is drawn first), only its sampling: training uses a coarser grid because
        it is faster.
    orientation : str, optional
        RAS+ axis code of the stored voxel order (e.g. ``"LPS"``), overriding the
        drawn one.
    noise_sd : float, optional
        Standard deviation of the Gaussian noise in HU, overriding the drawn one
        (5-25 HU).
    organ_hu_shift : dict, optional
        HU added to organs after they are drawn, for a domain the default models never
        saw (e.g. ``{"liver": 60, "kidney_cortex": 40}``: a late arterial phase with a
        bright liver). Keys ``"liver"``, ``"spleen"``, ``"kidney_cortex"``; the anatomy
        and every other draw stay as without it, and lesions keep their contrast to
        their host organ.

    Returns
    -------
    Phantom
        ``image`` (int16 HU) and ``labels`` (uint8) on the same grid, and the
        parameters drawn.

    Notes
    -----
    All random draws happen in a fixed order before and independently of the grid's
    resolution, so overriding ``spacing``, ``orientation`` or ``noise_sd`` keeps the
    same anatomy (the noise itself is drawn per voxel and so changes with the grid).
    Changing the order or number of draws changes every phantom, and with them the
    training data of the default models: retrain them after such a change.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    r = np.random.default_rng(rng.integers(2**63))  # anatomy and acquisition
    texture_rng = np.random.default_rng(rng.integers(2**63))
    noise_rng = np.random.default_rng(rng.integers(2**63))

    # acquisition
    in_plane = float(r.uniform(0.6, 1.0))
    slice_mm = float(r.choice([1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0]))
    drawn_spacing = (in_plane, in_plane, slice_mm)
    drawn_orientation = _choose_orientation(r)
    drawn_noise = float(r.uniform(5.0, 25.0))
    edge_mm = float(r.uniform(0.8, 2.0))  # partial-volume edge width
    phase = float(r.uniform(0.0, 1.0))  # 0 = little enhancement, 1 = strong portal venous
    # anatomy
    body = _draw_body(r)
    spine = _draw_spine(r, body, phase)
    organs = _draw_organs(r, body, spine, phase)
    if organ_hu_shift:
        unknown = set(organ_hu_shift) - {"liver", "spleen", "kidney_cortex"}
        if unknown:
            raise ValueError(f"organ_hu_shift: unknown organs {sorted(unknown)}")
        organs = replace(
            organs,
            liver_hu=organs.liver_hu + float(organ_hu_shift.get("liver", 0.0)),
            spleen_hu=organs.spleen_hu + float(organ_hu_shift.get("spleen", 0.0)),
            cortex_hu=organs.cortex_hu + float(organ_hu_shift.get("kidney_cortex", 0.0)),
        )
    lesions = _draw_lesions(r)
    bowel = _draw_bowel(r, body)
    spacing_mm = [
        float(drawn if wanted is None else wanted)
        for wanted, drawn in zip(spacing or (None, None, None), drawn_spacing, strict=True)
    ]
    grid, ras_affine = _make_grid(r, body, spacing_mm)
    orientation = orientation or drawn_orientation
    noise_sd = float(noise_sd if noise_sd is not None else drawn_noise)

    canvas = _Canvas(
        grid=grid,
        image=np.full(grid.shape, -1000.0, dtype=np.float32),
        labels=np.zeros(grid.shape, dtype=np.uint8),
        edge_mm=edge_mm,
    )
    abdomen = _paint_body(canvas, body, texture_rng)
    if body.table:
        _paint_table(canvas, body)
    for blob, hu in bowel:
        box, q = blob.field(grid)
        if box is not None:
            canvas.paint(box, q, blob.distance_scale_mm(), hu, None, within=abdomen[box])
    _paint_spine(canvas, spine)
    fields = _paint_organs(canvas, organs, abdomen, texture_rng)
    for lesion in lesions:
        _paint_lesion(canvas, lesion, organs, fields)

    image = canvas.image
    noise = noise_rng.standard_normal(grid.shape, dtype=np.float32)
    noise *= np.float32(noise_sd)
    image += noise
    del noise
    np.rint(image, out=image)
    np.clip(image, HU_MIN, HU_MAX, out=image)
    stored_image, affine = _store(image.astype(np.int16), ras_affine, orientation)
    stored_labels, _ = _store(canvas.labels, ras_affine, orientation)

    parameters = _parameters(seed, body, spine, organs, lesions, len(bowel))
    parameters.update(
        spacing_mm=spacing_mm,
        drawn_spacing_mm=list(drawn_spacing),
        orientation=orientation,
        noise_sd_hu=noise_sd,
        edge_mm=edge_mm,
        contrast_phase=phase,
        organ_hu_shift=dict(organ_hu_shift or {}),
        shape_ras=list(grid.shape),
        tumour_voxels=int((canvas.labels == TUMOUR).sum()),
    )
    description = f"napari-medseg phantom seed {seed}"
    image_volume = Volume(
        stored_image,
        affine,
        ScanMetadata(
            format="memory",
            modality="CT",
            units="HU",
            window=(40.0, 400.0),
            series_description=description,
        ),
    )
    label_volume = Volume(
        stored_labels, affine.copy(), ScanMetadata(format="memory", series_description=description)
    )
    return Phantom(image=image_volume, labels=label_volume, parameters=parameters)


def _parameters(seed, body: _Body, spine: _Spine, organs: _Organs, lesions, n_bowel) -> dict:
    """The drawn anatomy as plain JSON (units in the keys)."""
    liver_lesions = [lesion for lesion in lesions if lesion.host == LIVER]
    kidney = [lesion for lesion in lesions if lesion.host != LIVER]
    return {
        "seed": int(seed),
        "body_semi_axes_mm": [body.a, body.b],
        "body_power": body.power,
        "body_taper_per_100mm": body.taper,
        "body_centre_mm": body.centre.tolist(),
        "fat_rim_mm": body.fat_mm,
        "muscle_wall_mm": body.muscle_mm,
        "fat_hu": body.fat_hu,
        "muscle_hu": body.muscle_hu,
        "soft_tissue_hu": body.soft_hu,
        "z_extent_mm": body.z_extent,
        "table": body.table,
        "vertebra_radius_mm": spine.radius,
        "spine_centre_mm": [spine.x, spine.y],
        "bone_hu": [spine.cancellous_hu, spine.cortex_hu],
        "aorta_hu": spine.aorta_hu,
        "liver_hu": organs.liver_hu,
        "spleen_hu": organs.spleen_hu,
        "kidney_cortex_hu": organs.cortex_hu,
        "kidney_medulla_hu": organs.cortex_hu - organs.medulla_drop_hu,
        "liver_centre_mm": organs.liver.centre.tolist(),
        "liver_semi_axes_mm": organs.liver.semi.tolist(),
        "spleen_centre_mm": organs.spleen.centre.tolist(),
        "kidney_centres_mm": [blob.centre.tolist() for blob, _, _ in organs.kidneys],
        "lesions": [{"radius_mm": le.radius_mm, "delta_hu": le.delta_hu} for le in liver_lesions],
        "kidney_lesion": (
            {
                "side": "right" if kidney[0].host == RIGHT_KIDNEY else "left",
                "radius_mm": kidney[0].radius_mm,
            }
            if kidney
            else None
        ),
        "bowel_loops": int(n_bowel),
    }


def _store(
    array: np.ndarray, ras_affine: np.ndarray, axcodes: str
) -> tuple[np.ndarray, np.ndarray]:
    """Reorder an RAS-ordered array into the voxel order ``axcodes`` (a contiguous copy)."""
    from napari_medseg.models.preprocess import reorient

    view, affine = reorient(array, ras_affine, axcodes)
    return np.ascontiguousarray(view), affine
