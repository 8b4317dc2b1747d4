"""Shared set-up of the whole suite.

The test folders mirror the package (``io/``, ``labels/``, ``measure/``, ``models/``,
``inference/``, ``synthetic/``, ``cli/``; ``gui/`` for ``_napari``). The helpers they
share (``dicom_factory``, ``model_factory``, ``bundle_factory``, ``geometry_cases``,
``metrics_cases``) live here in ``tests/`` and are imported by module name, so this
folder is put on ``sys.path`` first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

pytest_plugins = ["strict_skips"]

# The suite compares float32 outputs with their references (MONAI's sliding window,
# `monai.bundle run`, nnUNetPredictor) bit for bit, so a CPU with native bfloat16 (AMX)
# must not switch those runs to bfloat16 on its own: float32 unless a test says
# otherwise (tests/inference/test_precision.py sets the mode it checks). Subprocesses
# (the CLI tests) inherit it.
os.environ.setdefault("MEDSEG_CPU_BF16", "off")
