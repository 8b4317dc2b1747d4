"""One place where napari-medseg talks to the user through napari notifications.

Reader warnings (de-obliqued display, gantry tilt, slice gaps), errors of typed
reads and writes, and informational messages all go through these helpers, so
messages have one format (``"<what>: <message>"``) and are also logged.

Notifications are dispatched from the thread that calls the helper; widgets
that work in napari workers call them from their ``returned``/``errored``
callbacks, which run in the main thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

logger = logging.getLogger(__name__)


def _prefix(message: str, context: str) -> str:
    if context and not message.startswith(context):
        return f"{context}: {message}"
    return message


def notify_info(message: str, *, context: str = "") -> None:
    """Show an information notification in napari (and log it)."""
    from napari.utils.notifications import show_info

    text = _prefix(message, context)
    logger.info(text)
    show_info(text)


def notify_warning(message: str, *, context: str = "") -> None:
    """Show a warning notification in napari (and log it)."""
    from napari.utils.notifications import show_warning

    text = _prefix(message, context)
    logger.warning(text)
    show_warning(text)


def notify_warnings(messages: Iterable[str], *, context: str = "") -> None:
    """Show each distinct message of ``messages`` as a warning notification."""
    seen: set[str] = set()
    for message in messages:
        if message and message not in seen:
            seen.add(message)
            notify_warning(message, context=context)


def notify_error(error: BaseException | str, *, context: str = "") -> None:
    """Show an error notification whose text is the error's own message.

    Parameters
    ----------
    error : BaseException or str
        Typed errors of :mod:`napari_medseg.errors` already name the file and
        the problem; other exceptions are shown as ``"<Type>: <message>"``.
    context : str
        Prefix naming what was being done (e.g. the file), added when the message
        does not start with it already.
    """
    from napari.utils.notifications import show_error

    from napari_medseg.errors import MedsegError

    if isinstance(error, BaseException):
        text = str(error)
        if not isinstance(error, MedsegError):
            text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    else:
        text = error
    text = _prefix(text, context)
    logger.error(text)
    show_error(text)
