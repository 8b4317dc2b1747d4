"""Opening a large DICOM folder says so before the read, and shows its progress.

napari's reader runs in the main thread: the notification and napari's progress bar
must be there while the read is still going (no layer yet), and the bar gone after.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from napari.utils import progress

from napari_medseg._napari.read_feedback import ANNOUNCE_FROM_FILES, count_files
from napari_medseg.synthetic.dicom_series import write_dicom_series

AFFINE = np.diag([-0.8, -0.8, 2.5, 1.0])


def _series(folder, slices: int) -> None:
    hu = np.random.default_rng(0).integers(-1000, 1000, (12, 10, slices)).astype(np.int16)
    write_dicom_series(hu, AFFINE, folder)


def _watch(viewer):
    """Notifications and progress-bar values seen during the read, with the layer
    count at the time."""
    from napari.utils.notifications import notification_manager

    seen: dict[str, list] = {"notes": [], "bars": []}

    def on_note(event):
        bars = [bar.desc for bar in progress._all_instances]
        seen["notes"].append((str(event.message), len(viewer.layers), bars))

    def on_bars(event):
        for bar in event.added:
            bar.events.value.connect(partial(_record, seen["bars"], bar))

    notification_manager.notification_ready.connect(on_note)
    progress._all_instances.events.changed.connect(on_bars)

    def stop():
        notification_manager.notification_ready.disconnect(on_note)
        progress._all_instances.events.changed.disconnect(on_bars)

    return seen, stop


def _record(values: list, bar, event) -> None:
    values.append((bar.desc.rstrip(": "), event.value, bar.total))


def test_a_large_dicom_folder_is_announced_and_its_progress_shown(make_napari_viewer, tmp_path):
    folder = tmp_path / "series"
    slices = ANNOUNCE_FROM_FILES + 10
    _series(folder, slices)
    viewer = make_napari_viewer(show=True)
    seen, stop = _watch(viewer)
    try:
        (layer,) = viewer.open(str(folder), plugin="napari-medseg")
    finally:
        stop()
    assert layer.data.shape[0] == slices
    announced = [n for n in seen["notes"] if f"Reading {slices} DICOM files" in n[0]]
    assert announced, seen["notes"]
    _, layers_then, bars_then = announced[0]
    assert layers_then == 0 and any("DICOM" in desc for desc in bars_then)  # before the read
    phases = {desc for desc, _, _ in seen["bars"]}
    assert {"Indexing DICOM headers", "Reading DICOM slices"} <= phases, seen["bars"]
    assert ("Reading DICOM slices", slices, slices) in seen["bars"]  # it reached the end
    assert not [bar for bar in progress._all_instances if "DICOM" in bar.desc]  # closed


def test_a_small_folder_is_read_without_a_word(make_napari_viewer, tmp_path, notes):
    folder = tmp_path / "series"
    _series(folder, 8)
    viewer = make_napari_viewer(show=True)
    viewer.open(str(folder), plugin="napari-medseg")
    assert not [n for n in notes if "Reading" in n]


def test_files_counted_for_a_folder_a_file_and_a_dicomdir(tmp_path):
    for name in ("DICOMDIR", "a.dcm", ".hidden", "sub/1", "sub/2", "sub/deeper/3", ".git/x"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert count_files(tmp_path) == 5  # hidden files and folders not counted
    assert count_files(tmp_path / "DICOMDIR") == 5  # it references the files below
    assert count_files(tmp_path / "a.dcm") == 2  # its series is gathered beside it
