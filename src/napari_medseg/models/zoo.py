"""Known MONAI Model Zoo bundles: a small catalogue, and a hash-checked, safe download.

The catalogue (``zoo_bundles.json`` next to this module) lists each bundle's name,
version, archive URL and checksum, taken from the Model Zoo's own ``models/model_info.json``
(which publishes SHA-1 checksums of the archives; SHA-256 is used instead when an entry
has one). Listing it imports neither torch nor MONAI.

:func:`fetch_bundle` downloads with MONAI's own ``monai.apps.utils.download_url`` (the
function ``monai.bundle.download`` uses), passing the catalogue hash so MONAI checks it,
and checks it again itself. ``monai.bundle.download(url=...)`` is not used: it downloads
with ``hash_val=None`` and extracts before anyone could check the archive. Extraction
is safe and atomic:

* every archive member is checked first: no absolute path, no ``..``, no symbolic or
  hard link, no device file, at most :data:`MAX_MEMBERS` members and
  :data:`MAX_UNPACKED_BYTES` bytes unpacked; then MONAI's ``extractall`` unpacks it
  (which repeats the path checks);
* everything happens in a temporary folder inside the cache; the bundle folder appears
  under its final name by one ``rename`` only when it is complete, so a failed or
  interrupted fetch leaves nothing behind.

Cache folder: ``$MEDSEG_BUNDLE_CACHE``, else ``$XDG_CACHE_HOME/napari-medseg/bundles``
(``~/.cache/...``; ``%LOCALAPPDATA%`` on Windows, ``~/Library/Caches`` on macOS).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from napari_medseg.errors import FileError

if TYPE_CHECKING:  # pragma: no cover
    from napari_medseg.models.loaded import LoadedModel

#: Environment variable naming the bundle cache folder.
CACHE_ENV = "MEDSEG_BUNDLE_CACHE"

#: The catalogue file.
CATALOGUE_FILE = Path(__file__).with_name("zoo_bundles.json")

#: File written into each fetched bundle: what was downloaded, from where, with which hash.
MARKER = ".medseg_bundle.json"

#: Limits on an archive's content (zip-bomb guard).
MAX_MEMBERS = 20_000
MAX_UNPACKED_BYTES = 20 * 1024**3


class ZooError(FileError):
    """A catalogue bundle cannot be listed, downloaded, verified or unpacked."""


@dataclass(frozen=True)
class ZooEntry:
    """One downloadable bundle version.

    Attributes
    ----------
    name, version : str
        Model Zoo bundle name and version (``"spleen_ct_segmentation"``, ``"0.5.9"``).
    title, description : str
        For menus and ``medseg models``.
    modality : str
        ``"CT"`` or ``"MR"``.
    url : str
        Archive URL (``.zip``, ``.tar.gz`` or ``.tar``).
    sha1, sha256 : str
        Checksums of the archive (hex); at least one is needed to download.
    """

    name: str
    version: str
    title: str
    description: str
    modality: str
    url: str
    sha1: str = ""
    sha256: str = ""

    @property
    def hash_type(self) -> str:
        """``"sha256"`` when known, else ``"sha1"`` (the Model Zoo's own), else ""."""
        return "sha256" if self.sha256 else "sha1" if self.sha1 else ""

    @property
    def hash_value(self) -> str:
        """The checksum :attr:`hash_type` names (lower-case hex), or ""."""
        return (self.sha256 or self.sha1).strip().lower()

    @property
    def archive_name(self) -> str:
        """File name of the archive (last part of the URL path)."""
        return PurePosixPath(urlparse(self.url).path).name or f"{self.folder_name}.zip"

    @property
    def folder_name(self) -> str:
        """Name of the bundle's folder in the cache: ``<name>_v<version>``."""
        return f"{self.name}_v{self.version}"


def known_bundles(catalogue: str | Path | None = None) -> list[ZooEntry]:
    """The bundles of the catalogue, in catalogue order (no torch, no network).

    Parameters
    ----------
    catalogue : path, optional
        Another catalogue JSON (same format as ``zoo_bundles.json``).

    Raises
    ------
    ZooError
        The catalogue file is unreadable or malformed.
    """
    path = Path(catalogue) if catalogue else CATALOGUE_FILE
    known = {f.name for f in fields(ZooEntry)}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [
            ZooEntry(**{k: str(v) for k, v in item.items() if k in known})
            for item in data["bundles"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ZooError(path, f"is not a readable bundle catalogue ({error}).") from None


def get_entry(name: str) -> ZooEntry:
    """The catalogue entry of a bundle name.

    Raises
    ------
    ZooError
        Unknown name; the message lists the known ones.
    """
    entries = known_bundles()
    for entry in entries:
        if entry.name == name:
            return entry
    names = ", ".join(e.name for e in entries)
    raise ZooError(name, "is not a bundle in the catalogue.", f"Known bundles: {names}.")


def bundle_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Where fetched bundles are kept (see the module notes); not created here."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "napari-medseg" / "bundles"


def file_hash(path: Path, hash_type: str) -> str:
    """Hex digest of a file (``"sha1"`` or ``"sha256"``), read in 1 MiB blocks."""
    digest = hashlib.new(hash_type)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unsafe_name(name: str) -> str:
    """Why an archive member name is unsafe to extract, or ""."""
    normal = name.replace("\\", "/")
    if normal.startswith("/") or (len(normal) > 1 and normal[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(normal).parts:
        return "'..' in the path"
    return ""


def check_archive(path: Path, url: str = "") -> None:
    """Refuse an archive with members that could land outside the extraction folder.

    Raises
    ------
    ZooError
        Absolute or ``..`` paths, symbolic or hard links, device files, too many members,
        too many bytes unpacked, or an unknown archive type; names the member.
    """
    where = url or str(path)
    problems: list[str] = []
    total = 0
    count = 0
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    count += 1
                    total += info.file_size
                    reason = _unsafe_name(info.filename)
                    if stat.S_ISLNK(info.external_attr >> 16):
                        reason = "symbolic link"
                    if reason:
                        problems.append(f"{info.filename!r} ({reason})")
        elif tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                for member in archive:
                    count += 1
                    total += max(member.size, 0)
                    reason = _unsafe_name(member.name)
                    if member.issym() or member.islnk():
                        reason = f"link to {member.linkname!r}"
                    elif not (member.isfile() or member.isdir()):
                        reason = "device or special file"
                    if reason:
                        problems.append(f"{member.name!r} ({reason})")
        else:
            raise ZooError(where, "is neither a zip nor a tar archive.")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise ZooError(where, f"is a damaged archive ({error}).") from None
    if problems:
        raise ZooError(
            where,
            f"refusing to unpack: {len(problems)} unsafe member(s): {', '.join(problems[:5])}.",
            "The archive is corrupt or malicious; nothing was extracted.",
        )
    if count > MAX_MEMBERS or total > MAX_UNPACKED_BYTES:
        raise ZooError(where, f"refusing to unpack {count} members, {total} bytes (too large).")


def _bundle_root(folder: Path) -> Path:
    """The extracted bundle's root: ``folder`` itself or its single top-level folder."""
    if (folder / "configs" / "metadata.json").is_file():
        return folder
    children = [p for p in folder.iterdir() if p.is_dir()]
    for child in children:
        if (child / "configs" / "metadata.json").is_file():
            return child
    raise ZooError(folder, "the archive holds no bundle (no configs/metadata.json).")


def _marker_matches(folder: Path, entry: ZooEntry) -> bool:
    """Whether ``folder`` was fetched by us from this entry's archive (same hash)."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get(entry.hash_type) == entry.hash_value


def _download(url: str, target: Path, entry: ZooEntry, progress: bool) -> None:
    """MONAI's ``download_url`` with the catalogue hash; errors become :class:`ZooError`."""
    from urllib.error import URLError

    from monai.apps.utils import HashCheckError, download_url

    try:
        download_url(
            url, target, hash_val=entry.hash_value, hash_type=entry.hash_type, progress=progress
        )
    except HashCheckError:
        raise ZooError(
            url,
            f"the downloaded archive does not match the catalogue's {entry.hash_type} "
            f"{entry.hash_value}; it was deleted.",
            "Retry later; if it persists the file was changed on the server (do not use it).",
        ) from None
    except (URLError, OSError, ValueError) as error:
        raise ZooError(
            url, f"download failed ({error}).", "Check the URL and the network."
        ) from None
    if not target.is_file():
        raise ZooError(url, "download failed (no file was written).")
    actual = file_hash(target, entry.hash_type)
    if actual != entry.hash_value:  # MONAI checked it too; never trust one check alone
        raise ZooError(url, f"{entry.hash_type} is {actual}, expected {entry.hash_value}.")


def fetch_bundle(
    name: str | ZooEntry,
    cache_dir: str | Path | None = None,
    base_url: str | None = None,
    progress: bool = False,
) -> Path:
    """Download, verify and unpack a catalogue bundle; reuse it when already fetched.

    Parameters
    ----------
    name : str or ZooEntry
        Catalogue name, or an entry (a bundle outside the catalogue, with its hash).
    cache_dir : path, optional
        Cache folder (default: :func:`bundle_cache_dir`).
    base_url : str, optional
        Mirror: download ``<base_url>/<archive name>`` instead of the entry's URL
        (same hash check).
    progress : bool
        Show MONAI's download progress bar.

    Returns
    -------
    Path
        The bundle's root folder (holds ``configs/``), ``<cache>/<name>_v<version>``.

    Raises
    ------
    ZooError
        No hash in the entry, download failure (names the URL), hash mismatch, unsafe
        or damaged archive, no bundle inside. Nothing is left in the cache then.
    """
    entry = name if isinstance(name, ZooEntry) else get_entry(name)
    if not entry.hash_value:
        raise ZooError(
            entry.url or entry.name,
            f"catalogue entry {entry.name} {entry.version} has no checksum; "
            "refusing to download code that cannot be verified.",
        )
    cache = bundle_cache_dir(cache_dir)
    target = cache / entry.folder_name
    if _marker_matches(target, entry):
        return target
    url = f"{base_url.rstrip('/')}/{entry.archive_name}" if base_url else entry.url
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as temporary:
        work = Path(temporary)
        archive = work / entry.archive_name
        _download(url, archive, entry, progress)
        check_archive(archive, url)
        from monai.apps.utils import extractall

        unpacked = work / "unpacked"
        unpacked.mkdir()
        try:
            extractall(archive, unpacked, has_base=False)
        except (ValueError, NotImplementedError, OSError) as error:
            raise ZooError(url, f"cannot be unpacked ({error}).") from None
        root = _bundle_root(unpacked)
        marker = {**asdict(entry), "downloaded_from": url}
        (root / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if target.exists():  # a stale or foreign folder: moved aside, deleted with `work`
            target.rename(work / "replaced")
        try:
            root.rename(target)
        except OSError:  # another process finished the same fetch first
            if not _marker_matches(target, entry):
                raise
    return target


def load_known_bundle(name: str, cache_dir: str | Path | None = None) -> LoadedModel:
    """Fetch a catalogue bundle and load it; trusted because its archive is hash-checked."""
    from napari_medseg.models.bundle import load_bundle

    return load_bundle(fetch_bundle(name, cache_dir), trust=True)


def remove_cached(name: str, cache_dir: str | Path | None = None) -> bool:
    """Delete a fetched bundle from the cache; whether there was one."""
    target = bundle_cache_dir(cache_dir) / get_entry(name).folder_name
    if not target.exists():
        return False
    shutil.rmtree(target)
    return True
