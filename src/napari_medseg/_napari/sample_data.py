"""npe2 sample data: the chest CT with its lung-tumour contour, and a T1 brain MR.

Where the files are found is :mod:`napari_medseg.samples`' job.
"""

from __future__ import annotations

from typing import Any

from napari_medseg.samples import sample_path

LayerData = tuple[Any, dict[str, Any], str]

#: Label colours of the sample's tumour layer: background, then red for label 1
#: (the tumour), then distinct colours for labels the user adds (cycled).
TUMOUR_COLORS = ["transparent", "red", "lime", "dodgerblue", "yellow", "magenta", "cyan"]


def _tumour_layer() -> LayerData:
    from napari_medseg._napari.label_classes import features_table
    from napari_medseg._napari.layers import volume_to_layer_data
    from napari_medseg.io import read_scan

    volume = read_scan(sample_path("chest_ct_tumour"))
    return volume_to_layer_data(
        volume,
        layer_type="labels",
        name="tumour",
        opacity=0.6,
        colormap=list(TUMOUR_COLORS),
        # the class name shows on hover, in the report and in saved sidecars / DICOM SEG
        features=features_table({1: ("tumour", "#ff0000")}),
    )


def _load(sample_key: str, name: str) -> list[LayerData]:
    from napari_medseg._napari.layers import layer_warnings, volume_to_layer_data
    from napari_medseg._napari.notifications import notify_error, notify_warnings
    from napari_medseg.errors import MedsegError
    from napari_medseg.io import read_scan

    try:
        image = volume_to_layer_data(read_scan(sample_path(sample_key)), name=name)
        labels = _tumour_layer()
    except MedsegError as error:
        notify_error(error)
        raise
    notify_warnings(layer_warnings(image), context=name)
    return [image, labels]


def chest_ct_nifti() -> list[LayerData]:
    """Chest CT (int16 HU, NIfTI) and its tumour labels (1 = tumour) as two layers."""
    return _load("chest_ct", "chest CT")


def chest_ct_dicom() -> list[LayerData]:
    """The same chest CT read from its DICOM series (JPEG 2000), with the tumour labels."""
    return _load("chest_ct_dicom", "chest CT (DICOM)")


def brain_t1() -> list[LayerData]:
    """The T1-weighted brain MR (Colin27, uint8, 1 mm) as one image layer."""
    from napari_medseg._napari.layers import layer_warnings, volume_to_layer_data
    from napari_medseg._napari.notifications import notify_error, notify_warnings
    from napari_medseg.errors import MedsegError
    from napari_medseg.io import read_scan

    try:
        image = volume_to_layer_data(read_scan(sample_path("brain_t1")), name="brain T1")
    except MedsegError as error:
        notify_error(error)
        raise
    notify_warnings(layer_warnings(image), context="brain T1")
    return [image]
