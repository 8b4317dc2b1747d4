"""Safe file output: every file this package writes goes through :func:`atomic_output`.

What a user can rely on, for every file written (labels, sidecars, probabilities,
DICOM SEG, reports, converted scans, napari's *File > Save*):

* **No half files.** A file is written to a hidden temporary file in the target's
  folder and only then published under its name (a rename, or a hard link), so a
  reader sees the old file or the whole new one, never a part. A write that fails or
  is interrupted leaves the old file as it was.
* **Nothing replaced unless allowed.** ``atomic_output(..., exclusive=True)`` claims
  the name with ``os.link`` (or ``O_EXCL`` where the file system has no hard links),
  which fails when the file appeared in the meantime, so of two writers racing for
  one new name exactly one wins and the other gets :class:`TargetExistsError`; the
  winner's file is never replaced. Without ``exclusive`` the file is replaced with
  ``os.replace`` (callers pass ``exclusive=not overwrite``).
* **Files of one save as a set.** Inside ``with output_set():`` every
  :func:`atomic_output` (also those of the writers it calls) writes its temporary
  file and waits; when the block ends they are published together. If a write fails,
  nothing is published; if publishing one fails, the ones already published by this
  set are taken back (a replaced file gets its old content back from a hard-linked
  copy), so a save leaves all its files or none. (A process killed in the
  microseconds between two publications can still leave part of a set.)
* **Sources never written over.** :func:`refuse_source_overwrite` refuses a target
  that is one of the inputs (or an existing file in an input folder), by path and by
  identity on disk.
* **One message per failure.** An ``OSError`` while writing becomes one
  :class:`~napari_medseg.errors.ScanWriteError` naming the target (never the
  temporary file) and the OS reason, e.g. ``out.nii.gz: cannot be written: No space
  left on device. Free some space or write elsewhere.``;
  :func:`check_writable` finds the same problems before a long job starts.
* **No litter.** Temporary files are named ``.<name>.medseg-<pid>-<host>-<random>.tmp``
  (plus the target's suffix, for writers that pick a format from it). A killed
  writer's temporary files are removed by the next write into that folder once the
  writer's process is gone and the file is older than :data:`STALE_AFTER_S` (pid
  reuse); ``<host>`` tags the machine and pid namespace, so temporary files of
  writers elsewhere (a shared network folder, another container) are never taken for
  dead ones. On Windows they are left alone.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import logging
import os
import re
import secrets
import socket
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from napari_medseg.errors import OverwriteSourceError, ScanWriteError

logger = logging.getLogger(__name__)

#: Age (s, by modification time) before a dead writer's temporary file is removed.
STALE_AFTER_S = 60.0

#: Message of :class:`TargetExistsError` (``str.format`` field ``path``).
TARGET_EXISTS_MESSAGE = (
    "{path}: exists already; it is not replaced. Allow replacing it, or choose another name."
)

#: A temporary file of this module: ``.<name>.medseg-<pid>-<host>-<random>.tmp...``.
_TEMP_RE = re.compile(
    r"^\.(?P<name>.*)\.medseg-(?P<pid>\d+)-(?P<host>[0-9a-f]{6})-[0-9a-f]{8}\.tmp(?:\..*)?$"
)


def _host_tag() -> str:
    """Six hex digits naming this machine and pid namespace (pids mean nothing elsewhere)."""
    where = socket.gethostname()
    with contextlib.suppress(OSError):
        where += os.readlink("/proc/self/ns/pid")  # containers on one host differ here
    return hashlib.sha1(where.encode("utf-8", "replace")).hexdigest()[:6]


_HOST = _host_tag()

#: The fix a message gives for an ``errno`` (see :func:`write_error`).
_FIXES = {
    errno.ENOSPC: "Free some space or write elsewhere.",
    errno.EDQUOT: "Free some space or write elsewhere.",
    errno.EFBIG: "Write it to a file system (or with limits) that allows larger files.",
    errno.EROFS: "Write elsewhere.",
    errno.EACCES: "Check the folder's permissions, or write elsewhere.",
    errno.EPERM: "Check the folder's permissions, or write elsewhere.",
    errno.EISDIR: "It is a folder: name a file.",
    errno.ENOTDIR: "Part of the path is a file, not a folder: check the path.",
    errno.ENOENT: "Check that the folder exists.",
    errno.ELOOP: "A symbolic link on the path points back to itself: remove it or choose "
    "another name.",
    errno.ENAMETOOLONG: "Choose a shorter name.",
}


class TargetExistsError(ScanWriteError):
    """An exclusive write found its target taken (by another writer, in the meantime).

    Parameters
    ----------
    path : path
        The target.
    message : str
        ``str.format`` template with the field ``path``.
    """

    def __init__(self, path: str | PathLike, message: str = TARGET_EXISTS_MESSAGE) -> None:
        super().__init__(path, "exists already.")
        self.args = (message.format(path=self.path),)  # the caller's wording


def os_reason(error: BaseException) -> str:
    """The OS's words for an ``OSError`` (``"No space left on device"``), one line.

    Follows ``__cause__`` to the error that carries the ``errno`` (pydicom re-raises an
    ``OSError`` with its traceback in the message, ``from`` the original one).
    """
    root = error
    while root.__cause__ is not None and getattr(root, "errno", None) is None:
        root = root.__cause__
    code = getattr(root, "errno", None)
    reason = getattr(root, "strerror", None) or (os.strerror(code) if code else "")
    return reason or (str(root).strip().splitlines() or [type(root).__name__])[0]


def _errno_of(error: BaseException) -> int | None:
    while error.__cause__ is not None and getattr(error, "errno", None) is None:
        error = error.__cause__
    return getattr(error, "errno", None)


def write_error(target: str | PathLike, error: OSError) -> ScanWriteError:
    """The one message of an ``OSError`` met writing ``target``: its name and the reason.

    Returns ``<target>: cannot be written: <reason>. <fix>``, with the fix chosen by
    ``errno`` (e.g. ``Free some space or write elsewhere.`` for a full disk).
    """
    fix = _FIXES.get(_errno_of(error), "Check the folder, or write elsewhere.")
    return ScanWriteError(target, f"cannot be written: {os_reason(error)}.", fix)


def target_of_temporary(path: str | PathLike) -> Path | None:
    """The file a temporary file of this module was written for (None for other files)."""
    path = Path(path)
    match = _TEMP_RE.match(path.name)
    return path.with_name(match["name"]) if match and match["name"] else None


def _resolve(path: str | PathLike) -> Path:
    """``Path.resolve()`` that survives a symbolic link loop (left unresolved there)."""
    return Path(os.path.realpath(os.fspath(path)))


def _same_file(a: Path, b: Path) -> bool:
    """Whether two existing paths are one file or folder (catches bind mounts, case aliases)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a link loop
        return False


def refuse_source_overwrite(target: str | PathLike, protect: Iterable[str | PathLike]) -> None:
    """Raise if ``target`` is one of the protected source files.

    Parameters
    ----------
    target : path
        File about to be written.
    protect : iterable of path
        Source scans (files) that must never be replaced; folders in the list protect
        every existing file below them (a DICOM series folder).

    Raises
    ------
    OverwriteSourceError
        When ``target`` is a protected file, or an existing file inside a protected
        folder. Paths are compared after resolving links and, for existing files, by
        identity on disk, so a second spelling of the same file (a bind mount, a
        case-insensitive volume) is caught too. A symbolic link loop is compared as
        it is spelled.
    """
    target_path = _resolve(target)
    target_exists = os.path.exists(target_path)
    for source in protect:
        if not source:
            continue
        source_path = _resolve(source)
        if target_path == source_path or (target_exists and _same_file(target_path, source_path)):
            raise OverwriteSourceError(target, source)
        if target_exists and _is_dir(source_path):
            for parent in target_path.parents:
                if parent == source_path or _same_file(parent, source_path):
                    raise OverwriteSourceError(target, source)


def safe_name(text: str, fallback: str = "labels") -> str:
    """``text`` as a file-name part: runs of other than ASCII letters, digits, ``._-``
    become ``_``, and no leading or trailing ``._-`` (never a hidden file, never ``..``).

    ``"chest CT (DICOM) - Labels"`` -> ``"chest_CT_DICOM-Labels"``; ``fallback`` when
    nothing is left.
    """
    cleaned = re.sub(r"[^\w.-]+", "_", str(text), flags=re.ASCII)
    cleaned = re.sub(r"_*-[-_]*", "-", cleaned).strip("._-")
    return cleaned or fallback


def _current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and restore (not atomic, but brief)
    os.umask(mask)
    return mask


def _name_max(folder: Path) -> int:
    """Longest file name (bytes) the folder's file system takes (255 where unknown)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _open_temporary(target: Path, suffix: str | None) -> Path:
    """Create (``O_EXCL``) and close an empty temporary file for ``target`` in its folder."""
    if suffix is None:
        suffix = "".join(target.suffixes)
    if suffix == ".tmp":
        suffix = ""
    folder = target.parent
    for _ in range(100):
        tail = f".medseg-{os.getpid()}-{_HOST}-{secrets.token_hex(4)}.tmp{suffix}"
        room = _name_max(folder) - len(os.fsencode(tail)) - 1
        name = target.name
        while len(os.fsencode(name)) > room and name:  # a long name: shortened in the temp
            name = name[:-1]
        temp = folder / f".{name}{tail}"
        try:
            handle = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            continue
        os.close(handle)
        return temp
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(folder))


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs here (unsure counts as running)."""
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's process
        return True
    return True


def remove_stale_temporaries(
    folder: str | PathLike, min_age_s: float = STALE_AFTER_S
) -> list[Path]:
    """Remove the temporary files of dead writers of this package in ``folder``.

    Only this module's own temporary files are touched (see the module docstring for
    the name), and only those written on this machine and pid namespace by a process
    that no longer runs, last modified at least ``min_age_s`` seconds ago (a new
    process may have got the dead one's pid).

    Parameters
    ----------
    folder : path
    min_age_s : float
        Minimum age (s) by modification time.

    Returns
    -------
    list of pathlib.Path
        The files removed (empty where the folder cannot be listed).
    """
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if match is None or match["host"] != _HOST:
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < min_age_s:
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        logger.info("removed %s, left by writer %d that is gone", entry.path, pid)
        removed.append(Path(entry.path))
    return removed


#: When this process last swept a folder for stale temporary files (``time.monotonic``).
_SWEPT: dict[str, float] = {}


def _sweep_once_in_a_while(folder: Path) -> None:
    """:func:`remove_stale_temporaries` at most once a minute per folder and process."""
    key = os.path.realpath(folder)
    now = time.monotonic()
    if now - _SWEPT.get(key, -STALE_AFTER_S) < STALE_AFTER_S:
        return
    _SWEPT[key] = now
    remove_stale_temporaries(folder)


def check_writable(target: str | PathLike) -> None:
    """Refuse a target that cannot be written, before the work that makes its content.

    Creates and removes a temporary file (named as :func:`atomic_output` names them)
    in the target's folder, or in the nearest existing folder above it when the folder
    is still to be made. Says nothing about free space for the file's content.

    Raises
    ------
    ScanWriteError
        The target is a folder or a symbolic link loop, a folder on its path is a file,
        its name is too long, or no file can be created there (read-only, no
        permission...); the message names the target.
    """
    path = Path(target)
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            raise ScanWriteError(path, "is a folder.", "Name a file (inside it, or elsewhere).")
    except FileNotFoundError:
        pass
    except OSError as error:  # a link loop, a file on the path...
        raise write_error(path, error) from error
    folder = path.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    try:
        os.unlink(_open_temporary(folder / path.name, None))
    except OSError as error:
        raise write_error(path, error) from error


@dataclass
class _Pending:
    """One file of a set: written to ``temp``, to be published as ``target``."""

    target: Path
    temp: Path
    exclusive: bool
    done: bool = False
    inode: tuple[int, int] | None = None  # (st_dev, st_ino) of the published file
    backup: Path | None = None  # a hard link to the file it replaced
    had_old: bool = False


class OutputSet:
    """Files published together: all of them, or none (see :func:`output_set`)."""

    def __init__(self, exclusive: bool = False, exists_message: str = TARGET_EXISTS_MESSAGE):
        self.exclusive = exclusive
        self.exists_message = exists_message
        self._pending: list[_Pending] = []

    def pending(self, target: str | PathLike) -> Path:
        """Where the content of ``target`` is before publication (its temporary file).

        ``target`` itself when this set holds no finished file for it.
        """
        target = Path(target)
        for item in self._pending:
            if item.done and item.target == target:
                return item.temp
        return target

    # -- what atomic_output calls -----------------------------------------------------
    def _add(self, target: Path, suffix: str | None, exclusive: bool) -> _Pending:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _sweep_once_in_a_while(target.parent)
            temp = _open_temporary(target, suffix)
        except OSError as error:
            raise write_error(target, error) from error
        item = _Pending(target, temp, exclusive or self.exclusive)
        self._pending.append(item)
        return item

    def _finish(self, item: _Pending) -> None:
        """The content is written: give it the permissions the published file gets."""
        try:
            if os.path.exists(item.target):
                mode = stat.S_IMODE(os.stat(item.target).st_mode)
            else:
                mode = 0o666 & ~_current_umask()
            os.chmod(item.temp, mode)
        except OSError as error:
            raise write_error(item.target, error) from error
        item.done = True

    def _discard(self) -> None:
        """Remove every temporary file (and backup) of the set."""
        for item in self._pending:
            for path in (item.temp, item.backup):
                if path is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
        self._pending.clear()

    # -- publication ------------------------------------------------------------------
    def _publish(self) -> None:
        published: list[_Pending] = []
        try:
            for item in self._pending:
                self._publish_one(item)
                published.append(item)
        except BaseException:
            for item in reversed(published):
                self._take_back(item)
            raise
        finally:
            self._discard()

    def _publish_one(self, item: _Pending) -> None:
        info = os.stat(item.temp)
        item.inode = (info.st_dev, info.st_ino)
        try:
            if item.exclusive:
                self._claim(item)
                return
            item.had_old = os.path.lexists(item.target)
            if item.had_old:
                item.backup = _open_temporary(item.target, ".old")
                try:  # a second name for the old file, to give it back on failure
                    os.unlink(item.backup)
                    os.link(item.target, item.backup, follow_symlinks=False)
                except OSError:
                    item.backup = None
            os.replace(item.temp, item.target)
        except FileExistsError as error:
            raise TargetExistsError(item.target, self.exists_message) from error
        except OSError as error:
            raise write_error(item.target, error) from error

    @staticmethod
    def _claim(item: _Pending) -> None:
        """Publish under a name that must be new: ``os.link`` (``O_EXCL`` + replace
        on file systems without hard links)."""
        try:
            os.link(item.temp, item.target)
        except FileExistsError:
            raise
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            handle = os.open(item.target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            claimed = os.fstat(handle)
            os.close(handle)
            try:
                os.replace(item.temp, item.target)
            except OSError:
                with contextlib.suppress(OSError):
                    if os.path.samestat(claimed, os.stat(item.target)):
                        os.unlink(item.target)  # the empty claim, still ours
                raise

    @staticmethod
    def _take_back(item: _Pending) -> None:
        """Undo one publication of this set (only if the file there is still ours)."""
        try:
            info = os.stat(item.target, follow_symlinks=False)
        except OSError:
            return
        if (info.st_dev, info.st_ino) != item.inode:
            return  # someone else's file by now: leave it
        with contextlib.suppress(OSError):
            if item.backup is not None:
                os.replace(item.backup, item.target)
                item.backup = None
            elif not item.had_old:
                os.unlink(item.target)
            else:
                logger.warning("%s: replaced, and the old file could not be kept", item.target)


_CURRENT: contextvars.ContextVar[OutputSet | None] = contextvars.ContextVar(
    "medseg_output_set", default=None
)


@contextlib.contextmanager
def output_set(
    exclusive: bool = False, exists_message: str = TARGET_EXISTS_MESSAGE
) -> Iterator[OutputSet]:
    """Publish every file written inside the block together: all or none.

    Each :func:`atomic_output` inside the block (in this thread, including those of
    the writers called) writes its temporary file and leaves it there; when the block
    ends without an exception they are published in the order they were written. An
    exception in the block removes the temporary files and publishes nothing; a
    failure while publishing takes back what this set published (an old file that
    was replaced gets its content back) and raises.

    Parameters
    ----------
    exclusive : bool
        Publish every file only under a name that does not exist yet (pass ``not
        overwrite``); a name taken in the meantime raises :class:`TargetExistsError`.
    exists_message : str
        Template of that error's message (field ``path``).

    Yields
    ------
    OutputSet
        Its :meth:`OutputSet.pending` finds a file written but not yet published.

    Raises
    ------
    TargetExistsError
        ``exclusive`` and a target exists.
    ScanWriteError
        A file could not be published (the message names it and the OS reason).
    """
    batch = OutputSet(exclusive, exists_message)
    token = _CURRENT.set(batch)
    try:
        yield batch
    except BaseException:
        batch._discard()
        raise
    finally:
        _CURRENT.reset(token)
    batch._publish()


@contextlib.contextmanager
def atomic_output(
    target: str | PathLike, suffix: str | None = None, *, exclusive: bool = False
) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; publish it as ``target`` on success.

    The temporary file lives in the same folder (so publication is a rename or a hard
    link, atomic on POSIX and Windows) and keeps ``suffix`` (default: the target's full
    suffix, e.g. ``.nii.gz``) so writers that pick a format from the extension work.
    The result gets the permissions of the file it replaces, or the usual ones for a
    new file (``0o666`` less the umask). Missing folders above ``target`` are made. On
    any exception the temporary file is removed and ``target`` is untouched. Inside
    :func:`output_set` the file is published with the others when the set ends.

    Parameters
    ----------
    target : path
        The file to write.
    suffix : str, optional
        The temporary file's suffix.
    exclusive : bool
        Publish only if ``target`` does not exist then (``os.link``); else it is
        replaced (``os.replace``).

    Raises
    ------
    TargetExistsError
        ``exclusive`` and ``target`` exists when the file is published.
    ScanWriteError
        An ``OSError`` while writing the temporary file (with no file name, or the
        temporary file's) or publishing it: one message naming ``target`` and the
        OS reason.
    """
    target_path = Path(target)
    batch = _CURRENT.get()
    own = batch is None
    if batch is None:
        batch = OutputSet(exclusive)
    item = batch._add(target_path, suffix, exclusive)
    try:
        yield item.temp
        batch._finish(item)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(item.temp)
        if own:
            batch._discard()
        else:
            batch._pending.remove(item)
        if isinstance(error, OSError) and _about_temporary(error, item.temp):
            raise write_error(target_path, error) from error
        raise
    if own:
        batch._publish()


def _about_temporary(error: OSError, temp: Path) -> bool:
    """Whether an ``OSError`` raised while writing ``temp`` concerns it (not another file)."""
    names = {getattr(error, "filename", None), getattr(error, "filename2", None)} - {None}
    return not names or any(Path(os.fsdecode(name)) == temp for name in names)


__all__ = [
    "STALE_AFTER_S",
    "TARGET_EXISTS_MESSAGE",
    "OutputSet",
    "TargetExistsError",
    "atomic_output",
    "check_writable",
    "os_reason",
    "output_set",
    "refuse_source_overwrite",
    "remove_stale_temporaries",
    "target_of_temporary",
    "write_error",
]
