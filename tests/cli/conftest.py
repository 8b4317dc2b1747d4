"""Fixtures of the ``medseg`` command tests."""

from __future__ import annotations

import subprocess

import pytest

from napari_medseg.cli import main


@pytest.fixture
def run(capsys):
    """The command in this process (fast): returns (status, stdout, stderr) as a
    ``CompletedProcess``."""

    def call(*args):
        status = main([str(a) for a in args])
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, status, captured.out, captured.err)

    return call
