"""napari integration: reader, writer, sample data and widgets.

This sub-package is the only place in napari-medseg that imports napari, Qt or
magicgui. Nothing here is imported by the core (``napari_medseg.io``,
``napari_medseg.geometry``...), and importing ``napari_medseg._napari`` itself
stays cheap: each module imports napari lazily where it can.
"""

from __future__ import annotations
