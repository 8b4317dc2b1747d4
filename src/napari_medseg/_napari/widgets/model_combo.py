"""The model list of the docks that run or fine-tune models (Segment, Train).

Named models come first (the catalogue's, the user's library: the name is the item's
data, the title its tooltip), then a separator and the entries that ask for a file or a
folder (*Bundle folder...*, *Spec file...*). A path chosen there joins the list before
the separator, its item's data the path; a cancelled dialog goes back to the model
chosen before. Models published while the dock is open are added with
:meth:`ModelCombo.add_models` (the current choice stays).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFileDialog, QWidget

#: Item data of the entries that open a dialog.
DIALOG = object()
#: The check box a dock shows for a MONAI bundle whose configs would run unchecked.
TRUST_TEXT = "Trust this bundle (its configs run Python code)"


def path_title(path: str) -> str:
    """How the list names a chosen path: a folder as ``nnU-Net: name`` or
    ``bundle: name``, a file by its name."""
    from napari_medseg.models.nnunet import is_nnunet_folder

    if not Path(path).is_dir():
        return Path(path).name
    return f"{'nnU-Net' if is_nnunet_folder(path) else 'bundle'}: {Path(path).name}"


class ModelCombo(QComboBox):
    """A combo box of models by name or path, with entries that ask for a path.

    Parameters
    ----------
    parent : QWidget
        The dock (parent of the dialogs too).
    what : str
        What the list is called in the error of :meth:`select` ("the model list").
    """

    def __init__(self, parent: QWidget, what: str = "the model list") -> None:
        super().__init__(parent)
        self._what = what
        self._choosers: dict[str, Callable[[], str]] = {}
        self._last_model = 0
        self.currentIndexChanged.connect(self._remember)
        self.activated.connect(self._on_activated)

    # -- filling ---------------------------------------------------------------------------
    def _separator(self) -> int:
        """Index of the separator (the count when there is none yet)."""
        return next((i for i in range(self.count()) if not self.itemText(i)), self.count())

    def add_models(self, entries: Iterable[tuple[str, str]]) -> None:
        """Add ``(name, tooltip)`` models not listed yet, before the separator."""
        index = self._separator()
        for name, tip in entries:
            if self.findData(name) >= 0:
                continue
            self.insertItem(index, name, name)
            self.setItemData(index, tip, Qt.ItemDataRole.ToolTipRole)
            index += 1

    def add_chooser(self, text: str, caption: str, file_filter: str = "", tip: str = "") -> None:
        """Add an entry that asks for a path: a folder, or with ``file_filter`` a file
        (Qt's filter string), in a dialog titled ``caption``. The first one comes after a
        separator."""
        if self._separator() == self.count():
            self.insertSeparator(self.count())
        self.addItem(text, DIALOG)
        if tip:
            self.setItemData(self.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        parent = self.parentWidget() or self
        if file_filter:
            self._choosers[text] = lambda: QFileDialog.getOpenFileName(
                parent, caption, "", file_filter
            )[0]
        else:
            self._choosers[text] = lambda: QFileDialog.getExistingDirectory(parent, caption)

    # -- choosing --------------------------------------------------------------------------
    @property
    def ref(self) -> str:
        """The chosen model's name or path ("" while a dialog entry is current)."""
        data = self.currentData()
        return "" if data is DIALOG or data is None else str(data)

    def select(self, name: str) -> None:
        """Choose a listed model by name (KeyError when it is not listed)."""
        index = self.findData(name)
        if index < 0:
            raise KeyError(f"{name!r} is not in {self._what}")
        self.setCurrentIndex(index)

    def select_path(self, path: str | Path) -> None:
        """Choose a model by path, listed before the separator. Choosing the current
        one again signals ``currentIndexChanged`` all the same (its files may have
        changed)."""
        ref = str(Path(path).expanduser())
        index = self.findData(ref)
        if index < 0:
            index = self._separator()
            self.insertItem(index, path_title(ref), ref)
            self.setItemData(index, ref, Qt.ItemDataRole.ToolTipRole)
        if index == self.currentIndex():
            self.currentIndexChanged.emit(index)
        else:
            self.setCurrentIndex(index)

    def _remember(self, index: int) -> None:
        if index >= 0 and self.itemData(index) is not DIALOG:
            self._last_model = index

    def _on_activated(self, index: int) -> None:
        if self.itemData(index) is not DIALOG:
            return
        path = self._choosers[self.itemText(index)]()
        if path:
            self.select_path(path)
        else:
            self.setCurrentIndex(self._last_model)


__all__ = ["DIALOG", "TRUST_TEXT", "ModelCombo", "path_title"]
