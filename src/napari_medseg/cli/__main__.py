"""``python -m napari_medseg.cli``: the ``medseg`` command."""

import sys

from napari_medseg.cli.entry import main

sys.exit(main())
