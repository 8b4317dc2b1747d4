"""A :class:`~napari_medseg.measure.report.Report` as a plain-text table for a terminal."""

from __future__ import annotations

import math
from typing import Any

from napari_medseg.measure.report import Report, label_rows


def _number(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{float(value):.{digits}f}"


def report_table(report: Report) -> list[str]:
    """Lines of a table with one row per label.

    Columns: value, name, voxels, volume (mL), and with an image the mean, SD and
    median intensity (HU for CT); with a reference Dice and HD95 (mm); with lesions
    the number of connected components. Empty values show as ``-``.

    Parameters
    ----------
    report : Report

    Returns
    -------
    list of str
        Header line, then one line per label.
    """
    rows = label_rows(report)
    units = next((r.get("intensity_units") for r in rows if r.get("intensity_units")), "")
    has_image = any("intensity_mean" in r for r in rows)
    columns: list[tuple[str, int, Any]] = [
        ("label", 5, lambda r: str(r["label"])),
        ("name", 20, lambda r: str(r["name"])[:20]),
        ("voxels", 10, lambda r: str(r["voxels"])),
        ("mL", 10, lambda r: _number(r["volume_ml"], 2)),
    ]
    if has_image:
        suffix = f" {units}" if units else ""
        columns += [
            (f"mean{suffix}", 10, lambda r: _number(r.get("intensity_mean"), 1)),
            (f"SD{suffix}", 9, lambda r: _number(r.get("intensity_sd"), 1)),
            (f"median{suffix}", 11, lambda r: _number(r.get("intensity_median"), 1)),
        ]
    if report.overlap is not None:
        columns += [
            ("Dice", 6, lambda r: _number(r.get("dice"), 3)),
            ("HD95 mm", 8, lambda r: _number(r.get("hd95_mm"), 1)),
        ]
    if report.lesions is not None:
        columns.append(("lesions", 7, lambda r: str(r.get("lesions", "-"))))
    header = "  ".join(
        f"{title:<{width}}" if title == "name" else f"{title:>{width}}"
        for title, width, _ in columns
    )
    lines = [header.rstrip()]
    for row in rows:
        cells = [
            f"{cell(row):<{width}}" if title == "name" else f"{cell(row):>{width}}"
            for title, width, cell in columns
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


__all__ = ["report_table"]
