"""Messages stay one printable line whatever the file is called."""

from __future__ import annotations

import os
import subprocess
import sys

from napari_medseg.errors import ScanReadError, shown_path


def test_control_characters_and_undecodable_bytes_are_escaped():
    name = os.fsdecode(b"scan\n\x1b[31mred\xff.nii")
    shown = shown_path(name)
    assert shown == "scan\\n\\x1b[31mred\\xff.nii"
    assert shown.isprintable()
    assert shown_path("Leber ü/ct.nii") == "Leber ü/ct.nii"  # readable names stay as they are
    message = str(ScanReadError(name, "is empty (0 bytes)."))
    assert "\n" not in message and message.startswith(shown)


def test_the_command_prints_one_line_for_such_a_name(tmp_path):
    name = os.fsencode(str(tmp_path)) + b"/bad\nname\xff.nii"
    with open(name, "wb"):
        pass  # an empty file
    result = subprocess.run(
        [sys.executable, "-m", "napari_medseg.cli", "info", name],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},  # a terminal that cannot show it
    )
    err = result.stderr.decode("ascii")
    assert result.returncode == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "bad\\nname\\xff.nii" in err


def test_info_shows_such_a_name_escaped(tmp_path):
    import shutil

    from napari_medseg.samples import sample_path

    name = os.fsencode(str(tmp_path)) + b"/bad\nname\xff.nii.gz"
    shutil.copyfile(sample_path("chest_ct_tumour"), name)
    result = subprocess.run(
        [sys.executable, "-m", "napari_medseg.cli", "info", name], capture_output=True
    )
    assert result.returncode == 0
    first = result.stdout.decode().splitlines()[0]
    assert first.endswith("bad\\nname\\xff.nii.gz  (nifti)")
