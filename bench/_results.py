"""Appending a dated section to ``bench/RESULTS.md`` (shared by the bench scripts)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def heading(title: str) -> str:
    """``## <title>, <YYYY-mm-dd HH:MM>`` (local time)."""
    return f"## {title}, {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}"


def append_text(text: str) -> None:
    """Append ``text`` (a whole section, heading included) to RESULTS.md."""
    with open(RESULTS, "a", encoding="utf-8") as handle:
        handle.write(f"\n{text.rstrip()}\n")
    print(f"appended to {RESULTS}")


def append_section(title: str, text: str) -> None:
    """Append a dated ``## <title>`` heading and ``text`` to RESULTS.md."""
    append_text(f"{heading(title)}\n\n{text}")
