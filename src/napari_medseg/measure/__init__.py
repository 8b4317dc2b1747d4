"""Measuring a label map: one pass that counts (:mod:`.tally`), per-label statistics
(:mod:`.stats`), agreement with a reference (:mod:`.overlap`, :mod:`.surface`), lesions
(:mod:`.lesions`), the two steps every report takes (:mod:`.pipeline`: prepare the
inputs, measure them), the report that puts them together (:mod:`.report`, full, and
:mod:`.incremental`, after an edit) and its text table (:mod:`.text`).

``build_report`` and ``write_report`` are importable from here::

    from napari_medseg.measure import build_report, write_report
"""

from __future__ import annotations

_EXPORTS = {
    "build_report": "report",
    "write_report": "report",
    "Report": "report",
    "ReportSettings": "report",
}


def __getattr__(name: str):
    # lazy, so that importing one measuring module does not import the report
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
