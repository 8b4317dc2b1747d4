"""Whose weights these are and what their licence allows: shown for every model.

Every model the project runs carries a licence (an SPDX identifier where one exists,
``"unknown"`` otherwise) and an intended use: the catalogue (``medseg models``), the
Segment widget, the result's provenance (sidecar, DICOM SEG, report) all show them.
Weights whose licence forbids commercial use (Creative Commons ``NC`` licences, and
licences that say "non-commercial" or "research only") are flagged before they run.
No torch here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: The licence of a model that does not state one.
UNKNOWN = "unknown"

_NON_COMMERCIAL = re.compile(
    r"(\bCC[-_ ]BY[-_ ](?:[A-Z]+[-_ ])*NC\b)|non[-_ ]?commercial|research[-_ ]only|"
    r"academic[-_ ]only",
    re.IGNORECASE,
)

#: First-line markers of common licence texts -> SPDX identifier.
_TEXT_MARKERS = (
    ("Apache License", "Apache-2.0"),
    ("MIT License", "MIT"),
    ("Permission is hereby granted, free of charge", "MIT"),
    ("Attribution-NonCommercial-ShareAlike 4.0", "CC-BY-NC-SA-4.0"),
    ("Attribution-NonCommercial 4.0", "CC-BY-NC-4.0"),
    ("Attribution-ShareAlike 4.0", "CC-BY-SA-4.0"),
    ("Attribution 4.0 International", "CC-BY-4.0"),
    ("BSD 3-Clause", "BSD-3-Clause"),
    ("GNU GENERAL PUBLIC LICENSE", "GPL"),
)


def is_non_commercial(licence: str) -> bool:
    """Whether a licence (identifier or text) rules out commercial use."""
    return bool(_NON_COMMERCIAL.search(str(licence or "")))


def licence_warning(model: str, licence: str) -> str:
    """The warning shown before a model with non-commercial weights runs ("" if none)."""
    if not is_non_commercial(licence):
        return ""
    return (
        f"model {model}: its weights are licensed {licence}, which does not allow "
        "commercial use; check that your use is permitted."
    )


def licence_from_text(text: str) -> str:
    """SPDX identifier of a licence file's text, the text's first line when unrecognised,
    or ``"unknown"`` for an empty text."""
    text = str(text or "").strip()
    if not text:
        return UNKNOWN
    head = " ".join(text[:2000].split())
    for marker, identifier in _TEXT_MARKERS:
        if marker.lower() in head.lower():
            return identifier
    first = text.splitlines()[0].strip()
    return first[:80] if first else UNKNOWN


def licence_of_folder(folder: Path, stated: str = "") -> tuple[str, str]:
    """Licence of a model folder: ``(licence, licence file)``.

    ``stated`` (e.g. a bundle's ``metadata.json`` ``license``) wins; otherwise the first
    of ``LICENSE``, ``LICENSE.txt``, ``LICENCE``, ``docs/LICENSE`` found is read.
    """
    candidates = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "docs/LICENSE")
    found = next((folder / name for name in candidates if (folder / name).is_file()), None)
    if stated and str(stated).strip():
        return str(stated).strip(), str(found or "")
    if found is None:
        return UNKNOWN, ""
    try:
        return licence_from_text(found.read_text(errors="replace")), str(found)
    except OSError:
        return UNKNOWN, str(found)


def licence_details(spec: Any) -> dict[str, str]:
    """``license``, ``license_file``, ``intended_use`` and ``source`` of a model spec,
    for provenance (the licence file as an absolute path)."""
    licence_file = str(getattr(spec, "license_file", "") or "")
    return {
        "license": str(getattr(spec, "license", "") or UNKNOWN),
        "license_file": str(spec.resolve(licence_file)) if licence_file else "",
        "intended_use": str(getattr(spec, "intended_use", "") or ""),
        "source": str(getattr(spec, "source", "") or ""),
    }
