"""Shared set-up of the whole suite.

The test folders mirror the package (``io/``, ``labels/``, ``measure/``, ``models/``,
``inference/``, ``synthetic/``, ``cli/``; ``gui/`` for ``_napari``). The helpers they
share (``dicom_factory``, ``model_factory``, ``bundle_factory``, ``geometry_cases``,
``metrics_cases``) live here in ``tests/`` and are imported by module name, so this
folder is put on ``sys.path`` first.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

pytest_plugins = ["strict_skips"]
