"""Running a network over a scan: :class:`~.segmenter.Segmenter` (load once, predict
many), the sliding window (:mod:`.sliding_window`, pure numpy planning and stitching)
and the device choice (:mod:`.devices`).

``Segmenter`` and ``SegmentationResult`` are importable from here; importing the
package imports no torch (only running a model does)::

    from napari_medseg.inference import Segmenter
"""

from __future__ import annotations

_EXPORTS = ("Segmenter", "SegmentationResult")


def __getattr__(name: str):
    if name in _EXPORTS:
        from napari_medseg.inference import segmenter

        return getattr(segmenter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
