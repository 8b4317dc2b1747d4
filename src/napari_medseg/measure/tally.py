"""One pass over a label map (and its reference and image) that counts everything.

:func:`tally_labels` walks the arrays once, in memory order and in blocks, and with
``numpy.bincount`` on the voxels that belong to any label collects:

* voxels per label (labels and reference);
* the confusion matrix of labels against reference (every voxel where either is
  non-zero; the background/background cell is not counted);
* per label, how many voxels lie in each index plane along I, J and K (the three
  projections, which give bounding boxes and centroids exactly);
* per label, the image values of its voxels (for mean, SD and exact percentiles).

Everything downstream (volumes, intensity statistics, Dice/IoU, bounding boxes,
centroids) is arithmetic on these small arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Voxels per block: large enough to amortise numpy's per-call cost, small enough
#: that the temporaries of a block stay in the CPU caches.
BLOCK_VOXELS = 1 << 21

#: Largest label value that is used directly as an index (no lookup table).
_DIRECT_MAX_LABEL = 255

#: Largest projection array (codes x plane count) binned per (label, reference) pair.
_JOINT_PROJECTION_BINS = 1 << 20


@dataclass
class Tally:
    """What one pass over a label map found. Label *indices* run over :attr:`values`.

    Attributes
    ----------
    shape : tuple of int
        ``(I, J, K)`` of the arrays.
    values : numpy.ndarray
        Shape (L,), int64: the label value of each label index; ``values[0] == 0``
        (background). May include values present in neither map (zero counts).
    counts : numpy.ndarray
        Shape (L,), int64: voxels of each label in the label map (``counts[0]`` is
        not computed and left 0).
    projections : list of numpy.ndarray
        Three arrays of shape (L, I), (L, J), (L, K): voxels of each label in each
        index plane along that axis (background rows are 0).
    ref_counts, ref_projections : numpy.ndarray, list or None
        The same for the reference (None without a reference).
    confusion : numpy.ndarray or None
        Shape (L, L), int64: ``confusion[a, b]`` voxels with label index ``a`` in the
        label map and ``b`` in the reference, counted where either is non-zero
        (``confusion[0, 0]`` is 0). None without a reference.
    label_of_value : numpy.ndarray or None
        For each voxel of the label map that has a label and an image value kept
        for statistics: its label index (int, shape (N,)); None without an image.
    image_values : numpy.ndarray or None
        Image values of those voxels, in the image's dtype, shape (N,).
    excluded : numpy.ndarray or None
        Shape (L,): voxels per label left out of the intensity statistics (padding,
        NaN, infinite); None without an image.
    """

    shape: tuple[int, int, int]
    values: np.ndarray
    counts: np.ndarray
    projections: list[np.ndarray]
    ref_counts: np.ndarray | None = None
    ref_projections: list[np.ndarray] | None = None
    confusion: np.ndarray | None = None
    label_of_value: np.ndarray | None = None
    image_values: np.ndarray | None = None
    excluded: np.ndarray | None = None

    def present_values(self, reference: bool = True) -> list[int]:
        """Non-zero label values with voxels in the label map (with ``reference``: in
        either map, when the tally has a reference), ascending."""
        present = self.counts > 0
        if reference and self.ref_counts is not None:
            present = present | (self.ref_counts > 0)
        return [int(v) for v in self.values[present] if v]

    def index_of(self, value: int) -> int | None:
        """Label index of a label value, or None when the value is not in :attr:`values`."""
        where = np.flatnonzero(self.values == value)
        return int(where[0]) if where.size else None


def _memory_order(array: np.ndarray) -> str:
    return "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"


def _lookup_table(maps: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """Label values present in ``maps`` and how to turn a value into its index.

    Returns ``(values, table)``. Small values (<= 255) index directly (``table`` is
    None); larger ones go through a value -> index array so the bincount arrays stay
    as small as the number of labels present; values of 2**24 and more are looked up
    in ``values`` itself with ``searchsorted`` (``table is values``).
    """
    top = max(int(m.max()) if m.size else 0 for m in maps)
    if top <= _DIRECT_MAX_LABEL:
        return np.arange(top + 1, dtype=np.int64), None
    if top < 1 << 24:
        present = np.zeros(top + 1, dtype=bool)
        for m in maps:
            present |= np.bincount(m.ravel(order="K"), minlength=top + 1) > 0
        present[0] = True
        values = np.flatnonzero(present).astype(np.int64)
    else:
        # as int64 before joining: uint64 and a signed type would meet as float64
        found = [np.unique(m).astype(np.int64) for m in maps]
        values = np.unique(np.concatenate([*found, np.zeros(1, np.int64)]))
    if top < 1 << 24:
        table = np.zeros(top + 1, dtype=np.intp)
        table[values] = np.arange(values.size)
        return values, table
    return values, values  # sorted values: looked up with searchsorted


def intensity_keep(
    values: np.ndarray, exclude_range: tuple[float, float] | None
) -> np.ndarray | None:
    """Which image values count in intensity statistics (None: all of them).

    Left out: values in ``exclude_range`` (both ends included; DICOM pixel padding)
    and, in float images, NaN and infinite values (no mean, SD or percentile is
    defined with them).
    """
    keep = None
    if exclude_range is not None:
        keep = (values < exclude_range[0]) | (values > exclude_range[1])
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        keep = finite if keep is None else keep & finite
    return keep


def _nonzero_either(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a != 0) | (b != 0)`` for two integer blocks, cheaply when their dtypes mix."""
    if np.result_type(a.dtype, b.dtype).kind in "iub":
        return np.bitwise_or(a, b) != 0
    return (a != 0) | (b != 0)  # e.g. uint64 with a signed type: no common integer type


def _to_index(block: np.ndarray, table: np.ndarray | None, values: np.ndarray) -> np.ndarray:
    if table is None:
        return block.astype(np.intp)
    if table is values:
        return np.searchsorted(values, block.astype(np.int64, copy=False)).astype(np.intp)
    return table[block]


def _axis_coordinates(flat: np.ndarray, shape: tuple[int, int, int], order: str) -> list:
    """Voxel indices ``[i, j, k]`` of flat positions in an array stored in ``order``."""
    i_n, j_n, k_n = shape
    if order == "F":
        rest, i = np.divmod(flat, i_n)
        k, j = np.divmod(rest, j_n)
    else:
        rest, k = np.divmod(flat, k_n)
        i, j = np.divmod(rest, j_n)
    return [i, j, k]


def tally_labels(
    labels: np.ndarray,
    reference: np.ndarray | None = None,
    image: np.ndarray | None = None,
    *,
    exclude_range: tuple[float, float] | None = None,
    block_voxels: int = BLOCK_VOXELS,
) -> Tally:
    """Count labels, their overlap with a reference and their image values in one pass.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label map ``(I, J, K)``, values >= 0 (see
        :func:`napari_medseg.labels.maps.as_label_array`).
    reference : numpy.ndarray, optional
        Integer label map on the same grid.
    image : numpy.ndarray, optional
        Scan on the same grid (any real dtype), e.g. CT in HU.
    exclude_range : (low, high), optional
        Image values in ``[low, high]`` (both ends included) are left out of the
        intensity values, e.g. DICOM pixel padding. NaN and infinite values are
        always left out (:func:`intensity_keep`).
    block_voxels : int
        Voxels per block of the pass.

    Returns
    -------
    Tally
    """
    shape = tuple(int(n) for n in labels.shape)
    for other, what in ((reference, "reference"), (image, "image")):
        if other is not None and tuple(other.shape) != shape:
            raise ValueError(f"{what} shape {other.shape} differs from labels shape {shape}")
    order = _memory_order(labels)
    lab = labels.ravel(order=order)
    ref = None if reference is None else reference.ravel(order=order)
    img = None if image is None else image.ravel(order=order)
    values, table = _lookup_table([m for m in (labels, reference) if m is not None])
    n_labels = values.size
    # voxels are counted by "code": the label index, or with a reference the pair
    # (label index, reference index); projections are per code when that stays small
    n_codes = n_labels * n_labels if ref is not None else n_labels
    joint = n_codes * max(shape) <= _JOINT_PROJECTION_BINS
    code_counts = np.zeros(n_codes, np.int64)
    projections = [np.zeros((n_codes if joint else n_labels) * n, np.int64) for n in shape]
    ref_projections = (
        None if ref is None or joint else [np.zeros(n_labels * n, np.int64) for n in shape]
    )
    kept_labels: list[np.ndarray] = []
    kept_values: list[np.ndarray] = []
    excluded = None if img is None else np.zeros(n_labels, np.int64)
    value_index_dtype = np.min_scalar_type(max(n_labels - 1, 0))

    def add_projections(target: list[np.ndarray], code: np.ndarray, flat: np.ndarray) -> None:
        for axis, coordinate in enumerate(_axis_coordinates(flat, shape, order)):
            binned = code * shape[axis]
            binned += coordinate
            target[axis] += np.bincount(binned, minlength=target[axis].size)

    for start in range(0, lab.size, block_voxels):
        lab_block = lab[start : start + block_voxels]
        if ref is None:
            where = np.flatnonzero(lab_block != 0)
            lab_index = _to_index(lab_block[where], table, values)
            code = lab_index
        else:
            ref_block = ref[start : start + block_voxels]
            where = np.flatnonzero(_nonzero_either(lab_block, ref_block))
            lab_index = _to_index(lab_block[where], table, values)
            ref_index = _to_index(ref_block[where], table, values)
            code = lab_index * n_labels
            code += ref_index
        code_counts += np.bincount(code, minlength=n_codes)
        flat = where + start
        if joint:
            add_projections(projections, code, flat)
        else:
            own = np.flatnonzero(lab_index != 0)
            add_projections(projections, lab_index[own], flat[own])
            ref_own = np.flatnonzero(ref_index != 0)
            add_projections(ref_projections, ref_index[ref_own], flat[ref_own])
        if img is not None:
            own = np.flatnonzero(lab_index != 0) if ref is not None else slice(None)
            own_index = lab_index[own]
            block_values = img[start : start + block_voxels][where[own]]
            keep = intensity_keep(block_values, exclude_range)
            if keep is not None and not keep.all():
                excluded += np.bincount(own_index[~keep], minlength=n_labels)
                own_index, block_values = own_index[keep], block_values[keep]
            kept_labels.append(own_index.astype(value_index_dtype))
            kept_values.append(block_values)

    projections = [p.reshape(-1, n) for p, n in zip(projections, shape, strict=True)]
    if ref is None:
        tally = Tally(shape, values, code_counts, projections)  # type: ignore[arg-type]
    else:
        confusion = code_counts.reshape(n_labels, n_labels)
        if joint:  # per (label, reference) pair -> per label and per reference label
            pairs = [p.reshape(n_labels, n_labels, -1) for p in projections]
            projections = [p.sum(axis=1) for p in pairs]
            ref_projections = [p.sum(axis=0) for p in pairs]
        else:
            ref_projections = [
                p.reshape(n_labels, n) for p, n in zip(ref_projections, shape, strict=True)
            ]
        for p in (*projections, *ref_projections):
            p[0] = 0  # background rows: not counted
        counts, ref_counts = confusion.sum(axis=1), confusion.sum(axis=0)
        counts[0] = ref_counts[0] = 0
        tally = Tally(
            shape,  # type: ignore[arg-type]
            values,
            counts,
            projections,
            ref_counts=ref_counts,
            ref_projections=ref_projections,
            confusion=confusion,
        )
    if img is not None:
        tally.label_of_value = (
            np.concatenate(kept_labels) if kept_labels else np.zeros(0, value_index_dtype)
        )
        tally.image_values = np.concatenate(kept_values) if kept_values else img[:0]
        tally.excluded = excluded
    return tally


def bounding_boxes(projections: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-label inclusive index ranges from the three projections of a :class:`Tally`.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``low`` and ``high``, shape (L, 3), int64: the first and last index along
        I, J, K holding the label (both -1 for a label with no voxel).
    """
    n_labels = projections[0].shape[0]
    low = np.full((n_labels, 3), -1, np.int64)
    high = np.full((n_labels, 3), -1, np.int64)
    for axis, projection in enumerate(projections):
        present = projection > 0
        has = present.any(axis=1)
        low[has, axis] = np.argmax(present[has], axis=1)
        high[has, axis] = projection.shape[1] - 1 - np.argmax(present[has, ::-1], axis=1)
    return low, high


def centroids_ijk(projections: Sequence[np.ndarray]) -> np.ndarray:
    """Per-label mean voxel index ``(i, j, k)`` (voxel centres), shape (L, 3); NaN when empty."""
    out = np.full((projections[0].shape[0], 3), np.nan)
    for axis, projection in enumerate(projections):
        total = projection.sum(axis=1)
        weighted = projection @ np.arange(projection.shape[1], dtype=np.float64)
        has = total > 0
        out[has, axis] = weighted[has] / total[has]
    return out
