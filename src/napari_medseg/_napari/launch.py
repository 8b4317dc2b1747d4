"""Start napari with a scan and napari-medseg's widgets docked (``medseg view``/``demo``)."""

from __future__ import annotations

from pathlib import Path

PLUGIN = "napari-medseg"
DOCKED_WIDGETS = ("DICOM series browser", "View orientation")


def make_viewer(path: str | Path | None = None, viewer=None):
    """Open ``path`` (default: the sample chest CT) in a viewer and dock the widgets.

    Parameters
    ----------
    path : path, optional
        Scan to open through the plugin's reader.
    viewer : napari.Viewer, optional
        Viewer to use; a new one is made when omitted.

    Returns
    -------
    napari.Viewer
    """
    import napari

    if viewer is None:
        viewer = napari.Viewer(title="napari-medseg")
    if path is None:
        viewer.open_sample(PLUGIN, "chest_ct")
    else:
        viewer.open(str(path), plugin=PLUGIN)
    for widget_name in DOCKED_WIDGETS:
        viewer.window.add_plugin_dock_widget(PLUGIN, widget_name)
    return viewer


def launch_viewer(path: str | Path | None = None) -> None:
    """Open the viewer and run the Qt event loop until the window closes."""
    import napari

    make_viewer(path)
    napari.run()
