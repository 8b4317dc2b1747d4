#!/usr/bin/env python
"""Linked views on a 512 x 512 x 300 CT with 10 labels: how long until every view shows it.

Usage (needs a display; under Xvfb with Mesa's software OpenGL here)::

    xvfb-run -a -s "-screen 0 1920x1080x24" python bench/bench_views.py [--write-results]

The scan and labels are ``bench_mesh.make_labels()`` (phantom seed 0 on a 512 x 512 x 300
grid with 10 organ-sized labels) with the phantom's CT. The window is ``medseg demo``'s
(:func:`napari_medseg._napari.launch.make_viewer` with the linked views) at 1920 x 1080.
Each action is timed from its start until all three canvases have drawn it: Qt's event
loop runs as in use (napari asks each canvas for an update; Qt paints all the dirty ones
in one pass over the window) until each canvas's draw event has fired. Median of
``--rounds``. (An earlier version forced ``repaint()`` on each canvas in turn, which makes
Qt compose the whole window three times: that is not what a user waits for.)

* **slice change** in each view (its slider one step on);
* **brush stroke seen in all views**: a stroke of napari's brush through the coronal
  view's mouse callbacks on a labels mirror, until the axial and sagittal views show it;
* **crosshair move**: a click in the axial view (the other two go to its slices).

The peer in the same run: napari's own single view, a slice change with the linked views
off. Goal of issue 16: < 100 ms each. The surface build of the 10 labels against marching
cubes + smoothing is ``bench/bench_mesh.py`` (its section of ``RESULTS.md``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_dicom_load import machine_info  # noqa: E402


def _scan_and_labels(tmp: Path) -> tuple[Path, Path, int]:
    import nibabel as nib
    from bench_mesh import make_labels
    from bench_prompt import phantom_512

    labels, affine, names = make_labels()
    image = np.asarray(phantom_512(0).image.array, dtype=np.int16)
    scan_path, labels_path = tmp / "ct512.nii.gz", tmp / "ct512_labels.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), scan_path)
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), affine), labels_path)
    return scan_path, labels_path, len(names)


class _DrawWatch:
    """Counts the draw events of vispy canvases."""

    def __init__(self, canvases) -> None:
        self.canvases = list(canvases)
        self.drawn: set[int] = set()
        for index, canvas in enumerate(self.canvases):
            canvas.events.draw.connect(lambda _event, index=index: self.drawn.add(index))

    def start(self) -> None:
        self.drawn.clear()

    def wait(self, app, timeout: float = 5.0) -> None:
        """Run the event loop until every canvas has drawn since :meth:`start`."""
        deadline = time.perf_counter() + timeout
        while len(self.drawn) < len(self.canvases):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"only canvases {sorted(self.drawn)} drew in {timeout} s")
            app.processEvents()


def _scene_canvas(qt_viewer):
    # napari's QtViewer.canvas wraps the vispy SceneCanvas (private name, napari 0.5 - 0.9)
    return qt_viewer.canvas._scene_canvas


def _median_ms(samples) -> float:
    return 1000.0 * statistics.median(samples)


def run(rounds: int) -> dict:
    import tempfile

    from napari.utils.interactions import (
        mouse_move_callbacks,
        mouse_press_callbacks,
        mouse_release_callbacks,
    )
    from qtpy.QtWidgets import QApplication

    from napari_medseg._napari.launch import make_viewer
    from napari_medseg._napari.linked_views import hide_linked_views, show_linked_views

    tmp = Path(tempfile.mkdtemp())
    scan_path, labels_path, count = _scan_and_labels(tmp)
    viewer = make_viewer(scan_path)
    app = QApplication.instance()
    window = viewer.window._qt_window
    window.resize(1920, 1040)
    (labels,) = viewer.open(labels_path, plugin="napari-medseg")
    image = next(layer for layer in viewer.layers if layer.name == "ct512")
    views = show_linked_views(viewer)
    for _ in range(20):
        app.processEvents()
    watch = _DrawWatch(_scene_canvas(qt_viewer) for qt_viewer in (
        viewer.window._qt_viewer, *(view.qt_viewer for view in views.views.values())))
    models = views.models()
    result: dict = {"labels": count, "shape": "x".join(map(str, image.data.shape))}

    # slice change in each view
    for plane, model in models.items():
        axis = model.dims.order[0]
        samples = []
        for n in range(rounds):
            step = 1 if n % 2 == 0 else -1
            watch.start()
            start = time.perf_counter()
            model.dims.set_current_step(axis, model.dims.current_step[axis] + step)
            watch.wait(app)
            samples.append(time.perf_counter() - start)
        result[f"slice {plane}"] = _median_ms(samples)

    # crosshair move: a click in the axial view
    labels.mode = "pan_zoom"
    centre = views.crosshair()
    samples = []
    for n in range(rounds):
        target = centre + np.array([0.0, 10.0 * (n % 3 - 1), 8.0 * (n % 2)])
        watch.start()
        start = time.perf_counter()
        for kind, callbacks in (("mouse_press", mouse_press_callbacks),
                                ("mouse_release", mouse_release_callbacks)):
            callbacks(viewer, _event(viewer, kind, target))
        watch.wait(app)
        samples.append(time.perf_counter() - start)
    result["crosshair move"] = _median_ms(samples)

    # a brush stroke in the coronal view, seen in all views
    coronal = views.views["coronal"]
    mirror = views.mirror_of(labels, "coronal")
    labels.mode = "paint"
    labels.brush_size = 8
    coronal.model.layers.selection.active = mirror
    samples = []
    for n in range(rounds):
        labels.selected_label = 1 + n % count
        middle = views.crosshair()
        stroke = [middle + np.array([ds, 0.0, dl]) for ds, dl in ((-6, -6), (0, 0), (6, 6))]
        watch.start()
        start = time.perf_counter()
        mouse_press_callbacks(mirror, _event(coronal.model, "mouse_press", stroke[0]))
        for point in stroke[1:]:
            mouse_move_callbacks(mirror, _event(coronal.model, "mouse_move", point))
        mouse_release_callbacks(mirror, _event(coronal.model, "mouse_release", stroke[-1]))
        views.refresh_now()  # the other views' refresh, which the event loop would run next
        watch.wait(app)
        samples.append(time.perf_counter() - start)
    result["brush stroke seen in all views"] = _median_ms(samples)
    labels.mode = "pan_zoom"

    # the peer: napari's single view, a slice change
    hide_linked_views(viewer)
    for _ in range(10):
        app.processEvents()
    single = _DrawWatch([_scene_canvas(viewer.window._qt_viewer)])
    samples = []
    for n in range(rounds):
        step = 1 if n % 2 == 0 else -1
        single.start()
        start = time.perf_counter()
        viewer.dims.set_current_step(0, viewer.dims.current_step[0] + step)
        single.wait(app)
        samples.append(time.perf_counter() - start)
    result["peer: slice change, napari single view"] = _median_ms(samples)
    viewer.close()
    return result


def _event(model, kind, world):
    from dataclasses import dataclass

    from napari.utils._proxies import ReadOnlyWrapper

    @dataclass
    class Event:  # the fields napari's mouse callbacks read
        type: str
        position: tuple
        is_dragging: bool
        dims_displayed: tuple
        dims_point: list
        button: int = 1
        modifiers: tuple = ()
        pos: tuple = (0, 0)
        view_direction: list | None = None
        handled: bool = False

    return ReadOnlyWrapper(Event(
        type=kind, position=tuple(float(v) for v in world), is_dragging=kind == "mouse_move",
        dims_displayed=tuple(model.dims.displayed), dims_point=list(model.dims.point),
    ))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    info = machine_info()
    result = run(args.rounds)
    peer = result["peer: slice change, napari single view"]
    lines = [
        "`python bench/bench_views.py " + " ".join(argv if argv is not None else sys.argv[1:])
        + "` (under `xvfb-run`, Mesa llvmpipe OpenGL)",
        "",
        f"Machine: {info['cpu']}, {info['cores']}, {info['ram']} RAM. Commit {info['commit']}. "
        f"CT {result['shape']} with {result['labels']} labels, window 1920 x 1040; median of "
        f"{args.rounds} rounds, each until every canvas had drawn it.",
        "",
        "| action | ms | vs napari single-view slice change | goal |",
        "|---|---|---|---|",
    ]
    for name, ms in result.items():
        if name in ("labels", "shape"):
            continue
        goal = "" if name.startswith("peer") else "< 100 ms"
        lines.append(f"| {name} | {ms:.1f} | {ms / peer:.2f}x | {goal} |")
    text = "\n".join(lines)
    print(text)
    if args.write_results:
        from _results import append_section

        append_section("Linked views (issue 16)", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
