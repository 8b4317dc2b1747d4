"""Shapes of the synthetic phantom, evaluated on an axis-aligned RAS voxel grid.

Everything here works in RAS+ millimetres on a :class:`Grid` given by the voxel-centre
coordinates along each axis, so a shape is computed only inside its bounding box and
with broadcasting (no per-voxel coordinate arrays). Shapes are soft: a normalised
radius ``q`` (``q < 1`` inside) becomes a partial-volume fraction over an edge a given
number of mm wide (:func:`edge_fraction`), which is how the phantom gets its partial
volume without any filtering.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Grid:
    """Axis-aligned RAS grid: 1D voxel-centre coordinates per axis, in mm (float32)."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxel counts along x, y, z."""
        return (self.x.size, self.y.size, self.z.size)

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index box of voxels whose centres lie in ``[lo, hi]`` mm, or None if empty."""
        slices = []
        for axis_coords, a, b in zip((self.x, self.y, self.z), lo, hi, strict=True):
            start = int(np.searchsorted(axis_coords, a, side="left"))
            stop = int(np.searchsorted(axis_coords, b, side="right"))
            if stop <= start:
                return None
            slices.append(slice(start, stop))
        return tuple(slices)  # type: ignore[return-value]

    def offsets(self, box, centre) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coordinates relative to ``centre`` inside ``box``, in mm (float32).

        Shapes ``(nx, 1, 1)``, ``(1, ny, 1)`` and ``(1, 1, nz)``: they broadcast to the box.
        """
        dx = (self.x[box[0]] - np.float32(centre[0]))[:, None, None]
        dy = (self.y[box[1]] - np.float32(centre[1]))[None, :, None]
        dz = (self.z[box[2]] - np.float32(centre[2]))[None, None, :]
        return dx, dy, dz


def random_rotation(rng: np.random.Generator, max_deg: tuple[float, float, float]) -> np.ndarray:
    """Random 3x3 rotation, angles uniform in +-max_deg about x, y, z (degrees)."""
    ax, ay, az = np.radians([rng.uniform(-m, m) for m in max_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def rotation_z(angle_rad: float) -> np.ndarray:
    """3x3 rotation about the z (inferior-superior) axis."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class Blob:
    """A deformed ellipsoid: centre (mm), semi-axes (mm), rotation, taper, harmonics.

    Its normalised radius at a point ``p`` is ``q = |u| * (1 + sum a_k cos(f_k . u +
    phi_k))`` with ``u = diag(1/semi) R^T (p - centre)``, and ``y``/``z`` of ``u``
    divided by ``1 + taper * u_x`` (a wedge growing towards +u_x). Inside is ``q < 1``.
    """

    centre: np.ndarray
    semi: np.ndarray
    rotation: np.ndarray
    taper: float = 0.0
    waves: list[tuple[np.ndarray, float, float]] = field(default_factory=list)

    def reach_mm(self) -> float:
        """Radius (mm) of a sphere around the centre that holds the whole blob."""
        bulge = 1.0 + sum(abs(a) for _, a, _ in self.waves)
        return float(self.semi.max() * (1.0 + abs(self.taper)) * bulge + 2.0)

    def field(self, grid: Grid) -> tuple[tuple[slice, slice, slice] | None, np.ndarray | None]:
        """Index box and normalised radius ``q`` (float32) inside it."""
        reach = self.reach_mm()
        box = grid.box(self.centre - reach, self.centre + reach)
        if box is None:
            return None, None
        dx, dy, dz = grid.offsets(box, self.centre)
        # u = M (p - c) with M = diag(1/semi) R^T: each u component is separable
        m = (np.diag(1.0 / self.semi) @ self.rotation.T).astype(np.float32)
        u = [m[r, 0] * dx + m[r, 1] * dy + m[r, 2] * dz for r in range(3)]
        if self.taper:
            widen = np.maximum(1.0 + np.float32(self.taper) * u[0], np.float32(0.2))
            u[1] = u[1] / widen
            u[2] = u[2] / widen
        q = np.sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2])
        if self.waves:
            bump = np.ones_like(q)
            for frequency, amplitude, phase in self.waves:
                f = frequency.astype(np.float32)
                bump += np.float32(amplitude) * np.cos(
                    f[0] * u[0] + f[1] * u[1] + f[2] * u[2] + np.float32(phase)
                )
            q *= bump
        return box, q

    def distance_scale_mm(self) -> float:
        """mm per unit of ``q`` near the surface (a mean semi-axis)."""
        return float(np.mean(self.semi))


def random_blob(
    rng: np.random.Generator,
    centre,
    semi,
    max_rot_deg=(10.0, 10.0, 30.0),
    taper: float = 0.0,
    n_waves: int = 3,
    amplitude: float = 0.06,
) -> Blob:
    """A :class:`Blob` with random rotation and low-frequency surface harmonics."""
    waves = []
    for _ in range(n_waves):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        frequency = direction * rng.uniform(1.5, 3.5)
        waves.append(
            (frequency, float(rng.uniform(0.3, 1.0) * amplitude), float(rng.uniform(0, 2 * np.pi)))
        )
    return Blob(
        centre=np.asarray(centre, dtype=float),
        semi=np.asarray(semi, dtype=float),
        rotation=random_rotation(rng, max_rot_deg),
        taper=taper,
        waves=waves,
    )


def edge_fraction(q: np.ndarray, scale_mm: float, edge_mm: float) -> np.ndarray:
    """Partial-volume fraction in [0, 1] of a shape ``q < 1`` with an edge ``edge_mm`` wide.

    ``(q - 1) * scale_mm`` approximates the signed distance to the surface in mm.
    """
    fraction = (np.float32(1.0) - q) * np.float32(scale_mm / edge_mm) + np.float32(0.5)
    return np.clip(fraction, 0.0, 1.0, out=fraction)


def paint(image, labels, box, fraction, hu, label: int | None, within=None) -> None:
    """Blend ``hu`` (scalar or array over the box) into ``image`` by ``fraction``.

    Voxels with ``fraction > 0.5`` (and inside ``within``, a boolean mask over the box,
    when given) take ``label`` unless it is None.
    """
    if within is not None:
        fraction = fraction * within
    target = image[box]
    target += fraction * (np.float32(hu) - target) if np.isscalar(hu) else fraction * (hu - target)
    if label is not None:
        labels[box][fraction > 0.5] = label


def smooth_texture(rng, grid: Grid, box, amplitude_hu: float, n_waves: int = 4) -> np.ndarray:
    """Low-frequency texture (sum of random plane waves, wavelengths 25-120 mm) over a box."""
    centre = np.array([grid.x[box[0]].mean(), grid.y[box[1]].mean(), grid.z[box[2]].mean()])
    dx, dy, dz = grid.offsets(box, centre)
    total = np.zeros(np.broadcast_shapes(dx.shape, dy.shape, dz.shape), dtype=np.float32)
    for _ in range(n_waves):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        k = (2 * np.pi / rng.uniform(25.0, 120.0) * direction).astype(np.float32)
        total += np.cos(k[0] * dx + k[1] * dy + k[2] * dz + np.float32(rng.uniform(0, 2 * np.pi)))
    total *= np.float32(amplitude_hu / np.sqrt(n_waves / 2))
    return total
