"""Dock widgets of napari-medseg (Qt; imported only by napari through the manifest)."""

from __future__ import annotations
