"""The Model Zoo catalogue and its download, against a real HTTP server on 127.0.0.1.

The server is Python's ``http.server`` in a thread, serving archives built here from a
fixture bundle, the way the Model Zoo packs them (one top-level ``<name>/`` folder).
Nothing about the download is mocked: MONAI's ``download_url`` fetches over HTTP.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
from bundle_factory import write_spleen_like

from napari_medseg.models.bundle import load_bundle
from napari_medseg.models.zoo import (
    CACHE_ENV,
    MARKER,
    ZooEntry,
    ZooError,
    fetch_bundle,
    get_entry,
    known_bundles,
)

NAME = "spleen_ct_segmentation"


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; remembers the paths asked for; keeps the test log quiet."""

    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server API
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(folder served, base URL, list of requested paths)."""
    www = tmp_path / "www"
    www.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(www))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_port}", requests
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return write_spleen_like(tmp_path_factory.mktemp("src"), fit_steps=0)


def _zip(bundle: Path, target: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(bundle.rglob("*")):
            if path.is_file():
                archive.write(path, f"{NAME}/{path.relative_to(bundle)}")
        for name, content in (extra or {}).items():
            archive.writestr(name, content)
    return target


def _tar(bundle: Path, target: Path, link: tuple[str, str] | None = None) -> Path:
    with tarfile.open(target, "w:gz") as archive:
        archive.add(bundle, arcname=NAME)
        if link:
            info = tarfile.TarInfo(link[0])
            info.type, info.linkname = tarfile.SYMTYPE, link[1]
            archive.addfile(info, io.BytesIO(b""))
    return target


def _entry(url: str, archive: Path, hash_type: str = "sha256", value: str | None = None):
    digest = value or hashlib.new(hash_type, archive.read_bytes()).hexdigest()
    return ZooEntry(NAME, "0.5.9", "Spleen", "test", "CT", url, **{hash_type: digest})


def _empty(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


def test_catalogue_lists_real_zoo_bundles_without_torch():
    code = (
        "import sys, napari_medseg.models.zoo as z; e = z.known_bundles();"
        "print(len(e), sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'monai')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split(" ", 1)[1].strip() == "[]"
    entries = {e.name: e for e in known_bundles()}
    assert {"spleen_ct_segmentation", "wholeBody_ct_segmentation", "brats_mri_segmentation"} <= set(
        entries
    )
    for entry in entries.values():  # every entry is hash-checked (the zoo publishes SHA-1)
        assert entry.hash_type == "sha1" and len(entry.hash_value) == 40
        assert entry.url.endswith(f"{entry.name}_v{entry.version}.zip")
    assert get_entry("brats_mri_segmentation").modality == "MR"
    with pytest.raises(ZooError, match="Known bundles: spleen_ct_segmentation"):
        get_entry("no_such_bundle")


def test_zip_archive_is_fetched_verified_and_loads(server, bundle, tmp_path):
    www, base, requests = server
    archive = _zip(bundle, www / f"{NAME}_v0.5.9.zip")
    entry = _entry(f"{base}/{archive.name}", archive)
    cache = tmp_path / "cache"
    folder = fetch_bundle(entry, cache_dir=cache)
    assert folder == cache / f"{NAME}_v0.5.9" and (folder / "configs" / "inference.json").is_file()
    assert sorted(p.name for p in cache.iterdir()) == [folder.name]  # no temporary left
    assert entry.sha256 in (folder / MARKER).read_text()
    model = load_bundle(folder, trust=True)
    assert model.spec.labels[1].name == "spleen" and model.spec.name == NAME
    archive.unlink()  # a second fetch is served from the cache, not the network
    assert fetch_bundle(entry, cache_dir=cache) == folder and len(requests) == 1


def test_tar_gz_archive_with_the_zoos_sha1_and_cache_from_env(
    server, bundle, tmp_path, monkeypatch
):
    www, base, _ = server
    archive = _tar(bundle, www / f"{NAME}_v0.5.9.tar.gz")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env-cache"))
    folder = fetch_bundle(_entry(f"{base}/{archive.name}", archive, "sha1"))
    assert folder.parent == tmp_path / "env-cache"
    assert (folder / "models" / "model.pt").read_bytes() == (
        bundle / "models" / "model.pt"
    ).read_bytes()


def test_mirror_base_url_replaces_the_catalogue_host(server, bundle, tmp_path):
    www, base, requests = server
    archive = _zip(bundle, www / f"{NAME}_v0.5.9.zip")
    entry = _entry(f"https://example.invalid/files/{archive.name}", archive)
    fetch_bundle(entry, cache_dir=tmp_path / "cache", base_url=base + "/")
    assert requests == [f"/{archive.name}"]


def test_wrong_hash_is_refused_and_leaves_nothing(server, bundle, tmp_path):
    www, base, _ = server
    archive = _zip(bundle, www / f"{NAME}_v0.5.9.zip")
    entry = _entry(f"{base}/{archive.name}", archive, value="0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(ZooError, match="does not match the catalogue's sha256 0000") as caught:
        fetch_bundle(entry, cache_dir=cache)
    assert base in str(caught.value)
    assert _empty(cache)


@pytest.mark.parametrize("kind", ["zip_dotdot", "zip_absolute", "tar_symlink"])
def test_path_traversal_archives_are_refused(server, bundle, tmp_path, kind):
    www, base, _ = server
    if kind == "zip_dotdot":
        archive = _zip(bundle, www / "a.zip", {f"{NAME}/../../escaped.txt": b"x"})
    elif kind == "zip_absolute":
        archive = _zip(bundle, www / "a.zip", {str(tmp_path / "escaped.txt"): b"x"})
    else:
        archive = _tar(bundle, www / "a.tar.gz", link=(f"{NAME}/models/link", "/etc"))
    cache = tmp_path / "cache"
    with pytest.raises(ZooError, match="refusing to unpack: 1 unsafe member"):
        fetch_bundle(_entry(f"{base}/{archive.name}", archive), cache_dir=cache)
    assert _empty(cache)
    assert not list(tmp_path.rglob("escaped.txt"))


def test_missing_file_on_the_server_names_the_url(server, tmp_path):
    _, base, _ = server
    url = f"{base}/{NAME}_v9.9.9.zip"
    entry = ZooEntry(NAME, "9.9.9", "Spleen", "", "CT", url, sha256="ab" * 32)
    with pytest.raises(ZooError, match="download failed") as caught:
        fetch_bundle(entry, cache_dir=tmp_path / "cache")
    assert url in str(caught.value) and "404" in str(caught.value)
    assert _empty(tmp_path / "cache")


def test_entry_without_a_hash_is_never_downloaded(server, bundle, tmp_path):
    www, base, requests = server
    archive = _zip(bundle, www / f"{NAME}_v0.5.9.zip")
    entry = ZooEntry(NAME, "0.5.9", "Spleen", "", "CT", f"{base}/{archive.name}")
    with pytest.raises(ZooError, match="no checksum"):
        fetch_bundle(entry, cache_dir=tmp_path / "cache")
    assert requests == []
