"""Assemble one indexed DICOM series into a :class:`~napari_medseg.volume.Volume`.

Memory: the output is allocated once as a ``(K, rows, columns)`` C-order block,
filled frame by frame (uncompressed frames are read from the file straight into
it; compressed frames are decoded one at a time from the file, never the whole
file at once), and returned as its transposed view ``(I, J, K) = (columns, rows,
slices)``.
The modality LUT is applied in place when the result fits the stored item size;
otherwise the peak is the stored block plus the result (<= 2x the result).
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import numpy as np

from napari_medseg.errors import InconsistentSeriesError
from napari_medseg.io.dicom.completeness import check_unreadable
from napari_medseg.io.dicom.metadata import series_metadata
from napari_medseg.io.dicom.pixels import (
    check_decoder,
    decode_frames,
    file_gone_error,
    frame_dtype,
    read_native_into,
    stored_range,
)
from napari_medseg.io.dicom.records import FrameRef, SeriesInfo
from napari_medseg.io.dicom.stack import StackPlan, direction_cosines, plan_stack
from napari_medseg.progress import Progress, raise_if_cancelled
from napari_medseg.volume import RAS_TO_LPS, Volume

logger = logging.getLogger(__name__)


_INT_CANDIDATES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64]
_FRAMES_PER_TASK = 32


def _smallest_int(lo: float, hi: float, min_itemsize: int) -> np.dtype | None:
    """Smallest integer dtype (signed first) of at least ``min_itemsize`` holding [lo, hi]."""
    for candidate in _INT_CANDIDATES:
        dtype = np.dtype(candidate)
        if dtype.itemsize < min_itemsize:
            continue
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return dtype
    return None


def _is_integral(value: float) -> bool:
    return abs(value - round(value)) < 1e-9


def _lut_range(lo: float, hi: float, slope: float, intercept: float) -> tuple[float, float]:
    a, b = lo * slope + intercept, hi * slope + intercept
    return min(a, b), max(a, b)


def _apply_int_lut(src: np.ndarray, slope: float, intercept: float, dst: np.ndarray) -> None:
    """dst = src * slope + intercept for integral slope/intercept (dst may alias src)."""
    if slope == 1.0:
        np.add(src, np.int64(round(intercept)), out=dst, casting="unsafe")
    else:
        tmp = src.astype(np.int64)
        tmp *= int(round(slope))
        tmp += int(round(intercept))
        dst[...] = tmp


def _apply_float_lut(src: np.ndarray, slope: float, intercept: float, dst: np.ndarray) -> None:
    """dst (float32) = src * slope + intercept."""
    np.multiply(src, np.float64(slope), out=dst, casting="unsafe")
    if intercept:
        np.add(dst, np.float32(intercept), out=dst)


def _decode_one(ref: FrameRef) -> np.ndarray:
    """Stored values of a single frame (for duplicate checks)."""
    if ref.pixel_offset is not None:
        out = np.empty((ref.rows, ref.columns), dtype=frame_dtype(ref))
        try:
            with open(ref.path, "rb") as handle:
                read_native_into(ref, out, handle)
        except OSError as error:
            raise file_gone_error(ref.path, error) from error
        return out
    return next(decode_frames(ref.path, [ref]))[1]


def _resolve_duplicates(frames: list[FrameRef], plan: StackPlan) -> list[str]:
    """Keep one image per position when duplicates are identical; raise otherwise."""
    identical = 0
    example = ""
    for k in plan.duplicate_slots:
        slot = plan.slots[k]
        first = frames[slot[0]]
        first_values: np.ndarray | None = None
        for idx in slot[1:]:
            other = frames[idx]
            if not (other.sop_uid and other.sop_uid == first.sop_uid):
                if first_values is None:
                    first_values = _decode_one(first) * first.slope + first.intercept
                values = _decode_one(other) * other.slope + other.intercept
                if not np.array_equal(first_values, values):
                    _, _, normal = direction_cosines(first.iop)  # type: ignore[arg-type]
                    depth = float(np.asarray(first.ipp) @ normal)
                    raise InconsistentSeriesError(
                        other.label,
                        f"sits at the same slice position as {first.label} ({depth:.3f} mm "
                        "along the slice normal) but holds different pixel values, so the "
                        "series holds two different images there.",
                        "Remove the file that does not belong (e.g. a repeated acquisition), "
                        "or copy each acquisition into its own folder.",
                    )
            identical += 1
            example = example or f"{other.label} = {first.label}"
    if not identical:
        return []
    return [
        f"{identical} duplicate image(s) at {len(plan.duplicate_slots)} slice position(s) "
        f"were identical to another image and left out (e.g. {example})"
    ]


class _Assembler:
    """Fills the output block from the frames, possibly in several threads.

    Modes (chosen from the headers before reading):

    * ``"float"``: a slope or intercept is not a whole number; the block is
      float32 and each frame is rescaled as it arrives.
    * ``"exact"``: every value BitsStored allows, once rescaled, fits an integer
      type as wide as the stored one; frames are rescaled in place as they arrive.
    * ``"optimistic"``: the allowed range does not fit (e.g. 16 stored bits plus
      an intercept), but the actual values usually do: each frame is rescaled in
      place when its own values fit the guess, and the rare rest is converted
      at the end (into a wider array when needed).
    """

    def __init__(self, frames: list[FrameRef], plan: StackPlan) -> None:
        self.plan = plan
        self.slots = [frames[s[0]] if s else None for s in plan.slots]
        used = [r for r in self.slots if r is not None]
        self.dtypes = {id(r): frame_dtype(r) for r in used}
        self.stored = np.result_type(*set(self.dtypes.values()))
        self.luts = {(r.slope, r.intercept) for r in used}
        integral = all(_is_integral(s) and _is_integral(b) for s, b in self.luts)
        shape = (len(plan.slots), used[0].rows, used[0].columns)
        self.mode = "float"
        self.out_dtype: np.dtype = np.dtype(np.float32)
        if integral:
            lo, hi = np.inf, -np.inf
            for ref in used:
                a, b = _lut_range(*stored_range(ref), ref.slope, ref.intercept)
                lo, hi = min(lo, a), max(hi, b)
            dtype = _smallest_int(lo, hi, self.stored.itemsize)
            if dtype is not None and dtype.itemsize == self.stored.itemsize:
                self.mode, self.out_dtype = "exact", dtype
            else:
                self.mode = "optimistic"
                self.out_dtype = np.dtype(f"i{self.stored.itemsize}")
        self.buffer = np.empty(shape, dtype=self.out_dtype if self.mode == "float" else self.stored)
        #: optimistic mode: per slot, rescaled (min, max) and whether it is converted
        self.ranges = np.zeros((len(plan.slots), 2), dtype=np.float64)
        self.converted = np.zeros(len(plan.slots), dtype=bool)
        self._local = threading.local()

    def _temp(self, dtype: np.dtype, shape: tuple[int, int]) -> np.ndarray:
        key = (dtype.str, shape)
        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = {}
        if key not in cache:
            cache[key] = np.empty(shape, dtype=dtype)
        return cache[key]

    def _target(self, k: int, ref: FrameRef) -> np.ndarray:
        """Array a native frame is read into: the output slice itself when possible."""
        dtype = self.dtypes[id(ref)]
        if self.mode != "float" and dtype == self.stored:
            return self.buffer[k]
        return self._temp(dtype, (ref.rows, ref.columns))

    def _finish(self, k: int, ref: FrameRef, values: np.ndarray) -> None:
        """Store decoded values of slot ``k`` and rescale them when the mode allows."""
        slope, intercept = ref.slope, ref.intercept
        if self.mode == "float":
            _apply_float_lut(values, slope, intercept, self.buffer[k])
            return
        dest = self.buffer[k]
        if values is not dest:
            dest[...] = values
        identity = (slope, intercept) == (1.0, 0.0)
        if self.mode == "exact":
            # values fit both the stored and the output type: same bits when identity
            if not identity:
                _apply_int_lut(dest, slope, intercept, self.buffer.view(self.out_dtype)[k])
            return
        lo, hi = _lut_range(float(dest.min()), float(dest.max()), slope, intercept)
        self.ranges[k] = (lo, hi)
        info = np.iinfo(self.out_dtype)
        if info.min <= lo and hi <= info.max:
            if not identity or dest.dtype != self.out_dtype:
                _apply_int_lut(dest, slope, intercept, self.buffer.view(self.out_dtype)[k])
            self.converted[k] = True

    def run_task(self, path: str, items: list[tuple[int, FrameRef]], stop: threading.Event) -> int:
        native = [(k, r) for k, r in items if r.pixel_offset is not None]
        other = [(k, r) for k, r in items if r.pixel_offset is None]
        if native:
            try:
                with open(path, "rb") as handle:
                    for k, ref in native:
                        if stop.is_set():
                            return 0
                        target = self._target(k, ref)
                        read_native_into(ref, target, handle)
                        self._finish(k, ref, target)
            except OSError as error:
                raise file_gone_error(path, error) from error
        if other:
            slot_of = {id(r): k for k, r in other}
            for ref, values in decode_frames(path, [r for _, r in other]):
                if stop.is_set():
                    return 0
                self._finish(slot_of[id(ref)], ref, values)
        return len(items)

    def tasks(self) -> list[tuple[str, list[tuple[int, FrameRef]]]]:
        by_file: dict[str, list[tuple[int, FrameRef]]] = {}
        for k, ref in enumerate(self.slots):
            if ref is not None:
                by_file.setdefault(ref.path, []).append((k, ref))
        workers = _worker_count()
        out = []
        for path, items in by_file.items():
            items.sort(key=lambda item: item[1].frame)
            if items[0][1].pixel_offset is not None:
                size = _FRAMES_PER_TASK
            else:  # compressed: each task parses the header again, so few large tasks
                size = max(_FRAMES_PER_TASK, -(-len(items) // workers))
            out.extend((path, items[i : i + size]) for i in range(0, len(items), size))
        return out

    def result(self) -> np.ndarray:
        """The filled ``(K, rows, columns)`` block with the LUT applied."""
        block = self.buffer
        used = [k for k, r in enumerate(self.slots) if r is not None]
        if self.mode == "exact":
            block = block.view(self.out_dtype)
        elif self.mode == "optimistic":
            block = self._settle(block, used)
        if self.plan.missing:
            fill = min(block[k].min() for k in used)
            for k in self.plan.missing:
                block[k] = fill
        return block

    def _settle(self, block: np.ndarray, used: list[int]) -> np.ndarray:
        """Optimistic mode: finish the slots whose values did not fit the guess."""
        guess = self.out_dtype
        pending = [k for k in used if not self.converted[k]]
        if not pending:
            return block.view(guess)
        lo = float(self.ranges[used, 0].min())
        hi = float(self.ranges[used, 1].max())
        final = _smallest_int(lo, hi, self.stored.itemsize) or np.dtype(np.float64)
        self.out_dtype = final
        if final.itemsize == block.dtype.itemsize:
            # converted slots hold values that fit both the guess and final: same bits
            view = block.view(final)
            for k in pending:
                ref = self.slots[k]
                _apply_int_lut(block[k], ref.slope, ref.intercept, view[k])
            return view
        out = np.empty(block.shape, dtype=final)
        done_view = block.view(guess)
        for k in used:
            ref = self.slots[k]
            if self.converted[k]:
                out[k] = done_view[k]
            else:
                _apply_int_lut(block[k], ref.slope, ref.intercept, out[k])
        self.buffer = out
        return out


def _ranges(indices: list[int]) -> str:
    """``[3, 4, 5, 9]`` as ``"3-5, 9"``."""
    runs: list[list[int]] = []
    for k in indices:
        if runs and k == runs[-1][1] + 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)


def _worker_count() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def read_dicom_series(
    series: SeriesInfo,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    allow_gaps: bool = False,
) -> Volume:
    """Read one indexed series into a volume with its exact patient geometry.

    Parameters
    ----------
    series : SeriesInfo
        From :func:`index_dicom`.
    progress : callable, optional
        ``progress(done, total)``, called in the caller's thread as slices arrive.
    cancel : threading.Event, optional
        When set, the read stops and raises :class:`Cancelled`.
    allow_gaps : bool
        Missing slices (a step of at least 1.5 expected steps; the expected
        step is the smallest cluster of steps, cross-checked with
        SpacingBetweenSlices / SliceThickness) raise by default, and so does
        irregular spacing that puts a slice more than half a voxel from its
        true position on the uniform grid, and so do unreadable files beside
        the series that may be its end slices (see
        :mod:`~napari_medseg.io.dicom.completeness`). With True missing slices
        are filled with the volume's minimum value, listed in
        ``metadata.extra["missing_slices"]`` and reported in the warnings (the
        grid keeps the true slice step, so nothing is stretched), and the worst
        misplacement and the unreadable files are reported in the warnings.
        Gaps whose filling would invent more slices than the series has raise
        even then.

    Returns
    -------
    Volume
        ``array`` shape ``(I, J, K)`` = (columns, rows, slices), slices sorted by
        position along the slice normal (ascending), never by InstanceNumber.
        Values have the modality LUT applied (HU for CT): float32 when a slope or
        intercept is not a whole number, else the smallest integer dtype (signed
        first, at least as wide as the stored pixels) that holds the values.
        ``affine`` maps voxel indices to RAS+ mm; for gantry tilt it keeps the
        shear. Identical duplicates are dropped with a warning.
        PixelPaddingValue is recorded, never applied: see
        :func:`~napari_medseg.io.dicom.metadata.pixel_padding` for
        ``metadata.extra["pixel_padding_value"]`` and ``["pixel_padding_range"]``.

    Raises
    ------
    IncompleteSeriesError
        Without ``allow_gaps``: files beside the series cannot be read and may
        be its end slices, or the series has a gap and unreadable files beside
        it (names them).
    InconsistentSeriesError
        Missing/mixed geometry, slices off a line, a gap or a slice misplaced by
        more than half a voxel (without ``allow_gaps``), gaps that would need
        more filler slices than the series has, or two different images at one
        position.
    TruncatedFileError, UnsupportedTransferSyntaxError, UnsupportedVolumeError
        Naming the file and what to do.
    ScanReadError
        A file was moved, deleted or made unreadable since it was indexed.
    Cancelled
        ``cancel`` was set.
    """
    frames = series.frames
    where = series.files[0] if series.files else (series.source or series.key)
    if not frames:
        raise InconsistentSeriesError(
            where,
            f"series {series.key} has no image frames.",
            "Index the folder again with index_dicom() and choose a series it lists.",
        )
    raise_if_cancelled(cancel, "DICOM read cancelled")
    name = series.key + (f" ({series.description!r})" if series.description else "")
    # with unreadable files beside the series its gaps decide what to say, so plan leniently
    lenient = allow_gaps or bool(series.unreadable)
    plan = plan_stack(frames, allow_gaps=lenient, name=name)
    unreadable_notes = check_unreadable(series, plan, allow_gaps)
    if lenient and not allow_gaps and (plan.gaps or plan.misplaced):
        plan_stack(frames, allow_gaps=False, name=name)  # raises the gap or misplacement
    checked: set[str] = set()
    for k_slot in plan.slots:
        for idx in k_slot:
            ref = frames[idx]
            frame_dtype(ref)
            if ref.transfer_syntax not in checked:
                check_decoder(ref)
                checked.add(ref.transfer_syntax)
    warnings = unreadable_notes + list(plan.warnings)
    warnings.extend(_resolve_duplicates(frames, plan))

    assembler = _Assembler(frames, plan)
    tasks = assembler.tasks()
    total = sum(len(items) for _, items in tasks)
    stop = threading.Event()
    done = 0
    if progress is not None:
        progress(0, total)
    workers = min(_worker_count(), len(tasks))
    if workers <= 1:
        for path, items in tasks:
            raise_if_cancelled(cancel, "DICOM read cancelled")
            done += assembler.run_task(path, items, stop)
            if progress is not None:
                progress(done, total)
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medseg-dicom") as pool:
            pending: set[Future] = {
                pool.submit(assembler.run_task, path, items, stop) for path, items in tasks
            }
            try:
                while pending:
                    finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                    for future in finished:
                        done += future.result()
                    if progress is not None and finished:
                        progress(done, total)
                    raise_if_cancelled(cancel, "DICOM read cancelled")
            except BaseException:
                stop.set()
                for future in pending:
                    future.cancel()
                raise
    raise_if_cancelled(cancel, "DICOM read cancelled")

    block = assembler.result()
    affine = RAS_TO_LPS @ plan.affine_lps
    if plan.missing:
        fill = block[plan.missing[0]].flat[0]
        warnings.append(
            f"{len(plan.missing)} missing slice(s) (output slices {_ranges(plan.missing)}) "
            f"were filled with the volume's minimum value {fill:g}; the grid keeps the true "
            "slice step"
        )
    metadata = series_metadata(
        series, assembler.slots, sorted(assembler.luts), assembler.stored, plan, warnings
    )
    for text in warnings:
        logger.info("%s: %s", series.key, text)
    return Volume(block.transpose(2, 1, 0), affine, metadata)
