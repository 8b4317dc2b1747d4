"""napari-medseg: segment medical scans in napari and from the ``medseg`` command.

Importing the package must stay cheap: it defines only the version. Import the
submodules you need (``napari_medseg.io``, ``napari_medseg.geometry``...).
"""

from __future__ import annotations

__version__ = "0.1.0"
