"""The cohort table: every done case's report, one row per case and label.

``OUTDIR/cohort.csv`` is the cases' ``report.csv`` rows (``medseg report``'s columns:
volume mL, HU statistics, lesion count, and Dice/HD95 where a reference was given) with
``case_id`` in front, cases sorted by id; a column a case lacks (no reference) is left
empty. ``OUTDIR/cohort_volumes.png`` (when matplotlib is installed) plots each label's
volume over the cases. Both are written atomically and rebuilt from the case folders
after every run, so they always describe every done case, also those done before.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

from napari_medseg.cohort.case_run import REPORT_NAME
from napari_medseg.cohort.cases import Case

#: Names of the table and its plot in OUTDIR.
TABLE_NAME = "cohort.csv"
PLOT_NAME = "cohort_volumes.png"


def cohort_rows(outdir: str | os.PathLike, cases: Iterable[Case]) -> tuple[list[str], list[dict]]:
    """``(columns, rows)`` of the cases whose ``report.csv`` exists, in case-id order."""
    columns: list[str] = ["case_id"]
    rows: list[dict] = []
    for case in sorted(cases, key=lambda c: c.case_id):
        path = Path(outdir) / case.case_id / REPORT_NAME
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                for name in reader.fieldnames or ():
                    if name not in columns:
                        columns.append(name)
                rows += [{"case_id": case.case_id, **row} for row in reader]
        except FileNotFoundError:
            continue
    return columns, rows


def write_cohort_table(outdir: str | os.PathLike, columns: list[str], rows: list[dict]) -> Path:
    """Write :func:`cohort_rows`'s ``columns`` and ``rows`` as ``OUTDIR/cohort.csv``
    (atomically); returns its path."""
    from napari_medseg.io.atomic import atomic_output

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    target = Path(outdir) / TABLE_NAME
    with atomic_output(target) as temp:
        temp.write_text(text.getvalue(), encoding="utf-8")
    return target


def write_volume_plot(outdir: str | os.PathLike, rows: list[dict]) -> Path | None:
    """``OUTDIR/cohort_volumes.png`` of :func:`cohort_rows`'s ``rows``: each label's
    volume (mL) in every case, a box and a dot per case for each label; None when
    matplotlib is missing or no case is done."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError:
        return None
    from napari_medseg.io.atomic import atomic_output

    by_label: dict[str, list[float]] = {}
    for row in rows:
        try:
            volume = float(row.get("volume_ml", ""))
        except ValueError:
            continue
        by_label.setdefault(row.get("name") or f"label {row.get('label')}", []).append(volume)
    if not by_label:
        return None
    names = sorted(by_label)
    figure = Figure(figsize=(max(4.0, 0.6 * len(names) + 2), 4.0), dpi=100)
    axes = figure.subplots()
    axes.boxplot(
        [by_label[name] for name in names],
        positions=range(len(names)),
        widths=0.5,
        showfliers=False,
    )
    for position, name in enumerate(names):  # every case as a dot over its label's box
        values = by_label[name]
        jitter = [position + 0.08 * ((i % 5) - 2) for i in range(len(values))]
        axes.plot(jitter, values, "o", alpha=0.6, markersize=4)
    axes.set_xlim(-0.6, len(names) - 0.4)
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_ylabel("volume (mL)")
    axes.set_title(f"Label volumes over {len({r['case_id'] for r in rows})} cases")
    figure.tight_layout()
    target = Path(outdir) / PLOT_NAME
    with atomic_output(target) as temp:
        figure.savefig(temp, format="png")
    return target


__all__ = ["PLOT_NAME", "TABLE_NAME", "cohort_rows", "write_cohort_table", "write_volume_plot"]
