"""``io.atomic``: exclusive names, sets of files, stale temporary files, one message per
``OSError`` — with real processes racing, killed and limited, and real file systems.

A full disk is a small tmpfs where the tests may mount one (root), else the per-process
file size limit (``RLIMIT_FSIZE`` with ``SIGXFSZ`` ignored: writes fail with ``EFBIG``),
which works anywhere on POSIX.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from napari_medseg.errors import OverwriteSourceError, ScanWriteError
from napari_medseg.io import atomic
from napari_medseg.io.atomic import (
    TargetExistsError,
    atomic_output,
    check_writable,
    os_reason,
    output_set,
    refuse_source_overwrite,
    remove_stale_temporaries,
    target_of_temporary,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX processes and limits")


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _python(code: str, *args: str) -> subprocess.Popen:
    """A real Python process running ``code`` with ``args``."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# -- exclusive names ----------------------------------------------------------------------
RACER = """
    import sys, time
    from pathlib import Path
    from napari_medseg.io.atomic import TargetExistsError, atomic_output

    folder, me, start, trials = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    for trial in range(trials):
        try:
            with atomic_output(folder / f"out{trial}.txt", exclusive=True) as temp:
                temp.write_text(me)
                # both writers publish at the same instant
                time.sleep(max(0.0, start + 0.05 * trial - time.time()))
            print(trial, "won", flush=True)
        except TargetExistsError as error:
            print(trial, "lost", error, flush=True)
"""


@posix_only
def test_of_two_processes_racing_for_a_name_exactly_one_wins(tmp_path):
    trials = 40
    start = time.time() + 3.0  # after both interpreters have started
    racers = {
        me: _python(RACER, str(tmp_path), me, str(start), str(trials)) for me in ("first", "second")
    }
    results = {me: racer.communicate(timeout=120) for me, racer in racers.items()}
    for me, racer in racers.items():
        assert racer.returncode == 0, results[me][1]
    outcomes = {
        me: [line.split(" ", 2) for line in out.splitlines()] for me, (out, _) in results.items()
    }
    for trial in range(trials):
        won = [me for me in racers if outcomes[me][trial][:2] == [str(trial), "won"]]
        assert len(won) == 1, (trial, outcomes)
        assert (tmp_path / f"out{trial}.txt").read_text() == won[0]  # the winner's file
        (lost,) = [outcomes[me][trial][2] for me in racers if me not in won]
        assert lost == (
            f"{tmp_path / f'out{trial}.txt'}: exists already; it is not replaced. Allow "
            "replacing it, or choose another name."
        )
    assert _hidden(tmp_path) == []


def test_exclusive_refuses_an_existing_file_and_replacing_is_allowed_without(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("mine")
    with pytest.raises(TargetExistsError, match="a.txt: exists already"):
        with atomic_output(target, exclusive=True) as temp:
            temp.write_text("theirs")
    assert target.read_text() == "mine" and _hidden(tmp_path) == []
    with atomic_output(target) as temp:
        temp.write_text("new")
    assert target.read_text() == "new" and _hidden(tmp_path) == []


# -- sets ----------------------------------------------------------------------------------
def test_a_set_publishes_nothing_when_a_write_fails(tmp_path):
    with pytest.raises(RuntimeError, match="the SEG cannot be made"):
        with output_set():
            with atomic_output(tmp_path / "labels.nii") as temp:
                temp.write_text("labels")
            assert not (tmp_path / "labels.nii").exists()  # waits for the others
            with atomic_output(tmp_path / "seg.dcm") as temp:
                raise RuntimeError("the SEG cannot be made")
    assert list(tmp_path.iterdir()) == []


def test_a_set_takes_back_what_it_published_when_publishing_fails(tmp_path):
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    with pytest.raises(TargetExistsError, match="second.txt"):
        with output_set(exclusive=True) as batch:
            for target in (first, second):
                with atomic_output(target) as temp:
                    temp.write_text("ours")
            assert batch.pending(first).read_text() == "ours"
            second.write_text("another writer's")  # appears before publication
    assert not first.exists() and second.read_text() == "another writer's"
    assert _hidden(tmp_path) == []

    # replacing: a file already replaced gets its old content back
    first.write_text("old first")
    second.unlink()
    with pytest.raises(ScanWriteError, match=r"second.txt: cannot be written: .*folder"):
        with output_set(exclusive=False):
            for target in (first, second):
                with atomic_output(target) as temp:
                    temp.write_text("new")
            second.mkdir()
            (second / "x").write_text("a folder that is not empty")
    assert first.read_text() == "old first" and _hidden(tmp_path) == []

    (second / "x").unlink()
    second.rmdir()
    with output_set():
        for target in (first, second):
            with atomic_output(target) as temp:
                temp.write_text("new")
    assert first.read_text() == second.read_text() == "new" and _hidden(tmp_path) == []


def test_a_set_holds_only_the_writes_of_its_own_thread(tmp_path):
    import threading

    def elsewhere():
        with atomic_output(tmp_path / "other.txt") as temp:
            temp.write_text("other")

    with output_set():
        with atomic_output(tmp_path / "mine.txt") as temp:
            temp.write_text("mine")
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        assert (tmp_path / "other.txt").exists() and not (tmp_path / "mine.txt").exists()
    assert (tmp_path / "mine.txt").read_text() == "mine"


# -- stale temporary files -----------------------------------------------------------------
SLOW_WRITER = """
    import sys, time
    from napari_medseg.io.atomic import atomic_output

    with atomic_output(sys.argv[1]) as temp:
        with open(temp, "wb") as handle:
            handle.write(b"x" * 100_000)
            handle.flush()
            print("writing", temp, flush=True)
            time.sleep(120)
"""


def _writer(target: Path) -> tuple[subprocess.Popen, Path]:
    writer = _python(SLOW_WRITER, str(target))
    line = writer.stdout.readline().split()
    assert line[:1] == ["writing"], line
    return writer, Path(line[1])


@posix_only
def test_temporary_files_of_a_killed_writer_are_removed_by_the_next_write(tmp_path, monkeypatch):
    target = tmp_path / "seg.nii.gz"
    killed, killed_temp = _writer(target)
    alive, alive_temp = _writer(tmp_path / "other.nii.gz")
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert killed_temp.exists() and not target.exists()  # what a killed run leaves
        assert target_of_temporary(killed_temp) == target
        other_tool = tmp_path / ".seg.nii.gz.tmp"  # not ours: never touched
        other_tool.write_text("someone else's")

        # younger than a minute: kept (its pid may already belong to a new process)
        assert remove_stale_temporaries(tmp_path) == []
        old = time.time() - 2 * atomic.STALE_AFTER_S
        for path in (killed_temp, alive_temp, other_tool):
            os.utime(path, (old, old))

        monkeypatch.setattr(atomic, "_SWEPT", {})  # this process has not swept yet
        with atomic_output(tmp_path / "report.csv") as temp:
            temp.write_text("a,b\n")
        assert not killed_temp.exists()
        assert alive_temp.exists()  # its writer still runs
        assert other_tool.read_text() == "someone else's"
    finally:
        alive.kill()
        alive.wait(timeout=30)
    assert remove_stale_temporaries(tmp_path, min_age_s=0) == [alive_temp]
    assert _hidden(tmp_path) == [other_tool.name]


# -- messages ------------------------------------------------------------------------------
LIMITED_WRITER = """
    import resource, signal, sys
    from napari_medseg.errors import MedsegError
    from napari_medseg.io.atomic import atomic_output

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))
    try:
        with atomic_output(sys.argv[1]) as temp:
            temp.write_bytes(b"x" * 100_000)
    except MedsegError as error:
        print(error)
"""


@posix_only
def test_a_full_disk_names_the_target_and_leaves_nothing(tmp_path):
    target = tmp_path / "out.nii.gz"
    target.write_bytes(b"the old file")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LIMITED_WRITER), str(target)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"{target}: cannot be written: File too large. Write it to a file system (or with "
        "limits) that allows larger files."
    )
    assert target.read_bytes() == b"the old file" and _hidden(tmp_path) == []


@pytest.fixture
def tmpfs(tmp_path):
    """A 64 KiB tmpfs (mounting needs root and a kernel that allows it: else skipped)."""
    mounted = []

    def mount(options="size=64k"):
        folder = tmp_path / f"tmpfs{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_full_tmpfs_and_a_read_only_one(tmpfs):
    full = tmpfs()
    target = full / "out.nii.gz"
    with pytest.raises(ScanWriteError) as raised:
        with atomic_output(target) as temp:
            temp.write_bytes(b"x" * 200_000)
    assert str(raised.value) == (
        f"{target}: cannot be written: No space left on device. Free some space or write elsewhere."
    )
    assert list(full.iterdir()) == []

    read_only = tmpfs("ro,size=64k")
    with pytest.raises(ScanWriteError) as raised:
        check_writable(read_only / "out.nii.gz")
    assert str(raised.value) == (
        f"{read_only / 'out.nii.gz'}: cannot be written: Read-only file system. Write elsewhere."
    )


def test_an_os_error_wrapped_with_a_traceback_gives_the_os_reason():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as original:  # what pydicom's tag_in_exception does
            raise OSError("With tag (7FE0,0010) got exception: ...\nTraceback ...") from original
    except OSError as wrapped:
        assert os_reason(wrapped) == "No space left on device"
        assert str(atomic.write_error("seg.dcm", wrapped)) == (
            "seg.dcm: cannot be written: No space left on device. Free some space or write "
            "elsewhere."
        )


# -- checks before work --------------------------------------------------------------------
def test_check_writable_finds_what_would_fail_later(tmp_path):
    folder = tmp_path / "a_folder.nii.gz"
    folder.mkdir()
    with pytest.raises(ScanWriteError, match="a_folder.nii.gz: is a folder"):
        check_writable(folder)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with pytest.raises(
        ScanWriteError,
        match="x.nii.gz: cannot be written: Not a directory. Part of the path is a file",
    ):
        check_writable(a_file / "sub" / "x.nii.gz")
    with pytest.raises(
        ScanWriteError, match="cannot be written: File name too long. Choose a shorter name."
    ):
        check_writable(tmp_path / ("n" * 300 + ".nii.gz"))
    loop = tmp_path / "loop.nii.gz"
    loop.symlink_to(loop.name)
    with pytest.raises(ScanWriteError, match="loop.nii.gz: cannot be written: Too many levels"):
        check_writable(loop)
    check_writable(tmp_path / "new" / "folders" / "x.nii.gz")  # made when written
    assert not (tmp_path / "new").exists()
    assert _hidden(tmp_path) == []
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ScanWriteError, match="locked/x.csv: cannot be written: Permission"):
            check_writable(locked / "x.csv")


def test_a_link_loop_as_a_source_is_compared_not_resolved(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    refuse_source_overwrite(tmp_path / "out.nii.gz", [loop])  # no RuntimeError
    with pytest.raises(OverwriteSourceError):
        refuse_source_overwrite(loop, [loop])


def test_a_long_name_is_shortened_in_its_temporary_file(tmp_path):
    target = tmp_path / ("n" * 240 + ".nii.gz")
    with atomic_output(target) as temp:
        assert len(temp.name) <= 255 and temp.name.endswith(".nii.gz")
        temp.write_text("x")
    assert target.read_text() == "x" and _hidden(tmp_path) == []
