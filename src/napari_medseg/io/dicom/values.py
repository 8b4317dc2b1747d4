"""DICOM element values as Python numbers and text, tolerant of what real files hold.

Each converter returns a default (None or ``""``) instead of raising on a missing,
empty, malformed or NaN value, so one odd header field never stops a series.
"""

from __future__ import annotations

import re
from typing import Any

import pydicom


def to_float(value: Any, default: float | None = None) -> float | None:
    """DICOM DS/IS/FD value (or the first of several) -> float, else ``default``."""
    if value is None:
        return default
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        if len(value) == 0:
            return default
        value = value[0]
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if out == out else default  # NaN -> default


def to_floats(value: Any, count: int) -> tuple[float, ...] | None:
    """Multi-valued DS -> tuple of ``count`` floats, or None when absent/bad."""
    if value is None:
        return None
    try:
        items = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if len(items) != count or any(v != v for v in items):
        return None
    return tuple(items)


def to_int(value: Any) -> int | None:
    """DICOM IS/US value -> int (a whole DS string too), else None."""
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return None


def to_str(value: Any) -> str:
    """DICOM text -> stripped str; several values joined with ``\\``; None -> ``""``."""
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


_NUMBER = re.compile(r"(\d+(?:\.\d+)?)")


def order_key(value: Any) -> tuple:
    """Sort key that orders numbers, and numbers inside text, by value.

    ``AcquisitionNumber=2`` comes before ``AcquisitionNumber=10`` and echo time
    2.25 before 2.5; tuples (DimensionIndexValues) compare item by item.
    """
    if isinstance(value, bool | int | float):
        return (0, float(value), ())
    if isinstance(value, tuple):
        return (1, 0.0, tuple(order_key(v) for v in value))
    pieces = _NUMBER.split(str(value))
    return (
        2,
        0.0,
        tuple((0, float(p), "") if i % 2 else (1, 0.0, p) for i, p in enumerate(pieces)),
    )


def one_line(error: object) -> str:
    """An exception's text on one line, for messages.

    pydicom puts each decoder plugin's failure on a line of its own
    (``"...all available plugins:\\n  pylibjpeg: ...\\n  pillow: ..."``); those
    become ``"...all available plugins: pylibjpeg: ...; pillow: ..."``.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    for line in lines[1:]:
        text += (" " if text.endswith(":") else "; ") + line
    return text


__all__ = ["one_line", "order_key", "to_float", "to_floats", "to_int", "to_str"]
