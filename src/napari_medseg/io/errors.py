"""The error tree, under its older name: see :mod:`napari_medseg.errors`."""

from napari_medseg.errors import *  # noqa: F403
from napari_medseg.errors import __all__  # noqa: F401
