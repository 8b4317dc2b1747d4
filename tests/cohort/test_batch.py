"""medseg batch on a real Dask LocalCluster (2 worker processes) with tiny models.

Each case's labels are compared with ``medseg segment``'s for the same scan and model;
reruns, a killed worker, a corrupt case, shards and the SLURM job script are checked
on real files written by nibabel and pydicom.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from geometry_cases import make_affine
from model_factory import write_unet_model

from napari_medseg.cli import main
from napari_medseg.cohort.cases import hash_files
from napari_medseg.synthetic.dicom_series import write_dicom_series

pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


def _scan(seed: int, shape=(20, 18, 14)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    array = rng.normal(0.0, 0.3, shape).astype(np.float32)
    lo = [2 + seed % 3, 3, 2]
    array[lo[0] : lo[0] + 9, lo[1] : lo[1] + 8, lo[2] : lo[2] + 7] += 1.5
    return array


def _cohort(folder: Path, n_nifti: int = 3, dicom: bool = True, broken: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    codes = ("RAS", "LPS", "PIL", "ASR")
    for i in range(n_nifti):
        affine = make_affine(codes[i % len(codes)], spacing=(0.8 + 0.1 * i, 0.9, 2.0))
        nib.save(nib.Nifti1Image(_scan(i), affine), folder / f"case{i}.nii.gz")
    if dicom:
        array = (_scan(7) * 100).astype(np.int16)
        write_dicom_series(
            array, make_affine("LPS", spacing=(0.7, 0.7, 2.5)), folder / "patient9" / "ct"
        )
    if broken:
        (folder / "broken.nii.gz").write_bytes(b"this is not a scan")
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_unet_model(
        tmp_path_factory.mktemp("model"), name="tiny3", out_channels=3, roi_size=(16, 16, 16)
    )


def _batch(*args) -> int:
    return main(["batch", *map(str, args)])


def _labels(path: Path) -> tuple[np.ndarray, np.ndarray, tuple]:
    image = nib.load(path)
    header = image.header
    return (
        np.asarray(image.dataobj),
        image.affine,
        (int(header["qform_code"]), int(header["sform_code"])),
    )


def _mtimes(outdir: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime_ns for p in outdir.glob("*/done.json")}


def test_outputs_equal_medseg_segment_case_by_case_and_a_bad_case_does_not_stop_the_rest(
    tmp_path, model, capsys
):
    cohort = _cohort(tmp_path / "cohort")
    out = tmp_path / "out"
    assert _batch(cohort, "-o", out, "--model", model, "--workers", 2, "--dicom-seg") == 0
    printed = capsys.readouterr()
    assert "5 cases: 4 done, 0 skipped (done before), 1 failed" in printed.out
    assert "dashboard http" in printed.err

    sources = {f"case{i}": cohort / f"case{i}.nii.gz" for i in range(3)}
    sources["patient9_ct"] = cohort / "patient9" / "ct"  # the DICOM series' folder
    for case_id, source in sources.items():
        reference = tmp_path / f"{case_id}_segment.nii.gz"
        assert main(["segment", str(source), "-o", str(reference), "--model", str(model)]) == 0
        ours, theirs = _labels(out / case_id / "labels.nii.gz"), _labels(reference)
        assert np.array_equal(ours[0], theirs[0]), case_id
        assert ours[0].any() and len(np.unique(ours[0])) > 1  # not a trivially empty map
        np.testing.assert_array_equal(ours[1], theirs[1])
        assert ours[2] == theirs[2]
        done = json.loads((out / case_id / "done.json").read_text())
        assert done["model"]["weights_sha256"] == hash_files([model, model.with_name("tiny3.pt")])
        for item in done["inputs"]:  # every file read, with its own hash
            assert item["sha256"] == hashlib.sha256(Path(item["path"]).read_bytes()).hexdigest()
        assert set(done["outputs"]) <= {p.name for p in (out / case_id).iterdir()}
    assert (out / "patient9_ct" / "labels_seg.dcm").is_file()  # a DICOM case: its SEG
    assert not (out / "case0" / "labels_seg.dcm").exists()  # a NIfTI case has nothing to reference

    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [f["case_id"] for f in failures] == ["broken"]
    assert failures[0]["kind"] == "bad input"
    assert "broken.nii.gz" in failures[0]["error"] and "not gzip-compressed" in failures[0]["error"]

    with open(out / "cohort.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["case_id"] for row in rows} == {"case0", "case1", "case2", "patient9_ct"}
    for row in rows:  # the volumes are the label maps' own
        labels, affine, _ = _labels(out / row["case_id"] / "labels.nii.gz")
        voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
        count = int((labels == int(row["label"])).sum())
        assert int(row["voxels"]) == count
        assert float(row["volume_ml"]) == pytest.approx(count * voxel_ml, rel=1e-6)
        assert row["lesions"] != ""
    assert not list(out.rglob(".*.tmp"))
    assert (out / "cohort_volumes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rerun_skips_what_is_done_and_redoes_a_changed_input_or_model(tmp_path, model, capsys):
    cohort = _cohort(tmp_path / "cohort", n_nifti=3, dicom=False, broken=False)
    out = tmp_path / "out"
    assert _batch(cohort, "-o", out, "--model", model, "--workers", 2) == 0
    first = _mtimes(out)
    assert set(first) == {"case0", "case1", "case2"}
    capsys.readouterr()

    os.utime(cohort / "case0.nii.gz")  # touched, same contents: still done
    assert _batch(cohort, "-o", out, "--model", model, "--workers", 2) == 0
    assert "3 cases: 0 done, 3 skipped" in capsys.readouterr().out
    assert _mtimes(out) == first

    image = nib.load(cohort / "case1.nii.gz")  # new contents: redone
    changed = np.asarray(image.dataobj).copy()
    changed[:6] += 2.0
    nib.save(nib.Nifti1Image(changed, image.affine), cohort / "case1.nii.gz")
    (out / "case2" / "report.csv").unlink()  # an output lost: redone
    assert _batch(cohort, "-o", out, "--model", model, "--workers", 2) == 0
    assert "3 cases: 2 done, 1 skipped" in capsys.readouterr().out
    now = _mtimes(out)
    assert now["case0"] == first["case0"] and now["case1"] != first["case1"]
    segment = tmp_path / "case1_segment.nii.gz"
    assert (
        main(["segment", str(cohort / "case1.nii.gz"), "-o", str(segment), "--model", str(model)])
        == 0
    )
    assert np.array_equal(_labels(out / "case1" / "labels.nii.gz")[0], _labels(segment)[0])

    other = write_unet_model(
        tmp_path / "model2", name="tiny3", out_channels=3, roi_size=(16, 16, 16), seed=5
    )  # same name, other weights
    capsys.readouterr()
    assert _batch(cohort, "-o", out, "--model", other, "--workers", 2) == 0
    assert "3 cases: 3 done, 0 skipped" in capsys.readouterr().out


def _worker_pids(client) -> dict[str, int]:
    return client.run(os.getpid)


def test_a_worker_killed_mid_case_is_retried_elsewhere_and_leaves_nothing_partial(tmp_path):
    from napari_medseg.cohort.batch import run_batch
    from napari_medseg.cohort.case_run import BatchSettings
    from napari_medseg.cohort.cases import load_cases
    from napari_medseg.cohort.engine import DaskOptions, open_client, run_dask

    cohort = tmp_path / "cohort"
    cohort.mkdir()
    for i in range(4):  # big enough that a case takes a while with small windows
        nib.save(
            nib.Nifti1Image(_scan(i, shape=(72, 64, 48)), make_affine("RAS")),
            cohort / f"big{i}.nii.gz",
        )
    slow = write_unet_model(
        tmp_path / "slow",
        name="slow",
        out_channels=3,
        roi_size=(8, 8, 8),
        overlap=0.5,
        sw_batch_size=1,
    )
    options = DaskOptions(workers=2, retry=2, dashboard=None)
    client, cluster = open_client(options)
    # Dask's memory trimming (which slows torch on the CPU 1.5x) is off in these workers
    assert set(client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == {None}
    assert set(client.run(os.environ.get, "OMP_NUM_THREADS").values()) == {"1"}
    out = tmp_path / "out"
    result = {}
    try:
        settings = BatchSettings(model=str(slow), device="cpu")

        def engine(cases, settings, model, outdir, on_outcome):
            run_dask(client, cases, settings, model, outdir, on_outcome, options)

        thread = threading.Thread(
            target=lambda: result.update(
                summary=run_batch(load_cases(cohort), out, settings, engine)
            )
        )
        thread.start()
        killed = None
        deadline = time.time() + 120
        while killed is None and time.time() < deadline:
            busy = {address: keys for address, keys in client.processing().items() if keys}
            started = [p for p in out.glob("*") if p.is_dir() and not (p / "done.json").exists()]
            if busy and started:
                time.sleep(0.5)  # well into the case
                address = next(iter(busy))
                pid = _worker_pids(client)[address]
                os.kill(pid, signal.SIGKILL)
                killed = pid
            time.sleep(0.05)
        thread.join(timeout=300)
        assert killed is not None and not thread.is_alive()
    finally:
        client.close()
        cluster.close()
    summary = result["summary"]
    assert sorted(summary.done) == ["big0", "big1", "big2", "big3"] and not summary.failed
    workers = {o["worker"] for o in summary.outcomes}
    assert len(workers) >= 2
    for case in summary.done:
        done = json.loads((out / case / "done.json").read_text())
        assert all((out / case / name).is_file() for name in done["outputs"])
        assert done["pid"] != killed
    assert not list(out.rglob(".*.tmp"))  # the killed writer's temporary files are gone
    assert not (out / "failures.jsonl").exists()


def test_parts_are_disjoint_and_cover_the_cohort(tmp_path, model, capsys):
    from napari_medseg.cohort.cases import find_cases, select_part

    cohort = _cohort(tmp_path / "cohort", n_nifti=7, dicom=True, broken=False)
    cases = find_cases(cohort)
    assert len(cases) == 8
    parts = [select_part(cases, i, 3) for i in (1, 2, 3)]
    ids = [case.case_id for part in parts for case in part]
    assert sorted(ids) == sorted(case.case_id for case in cases)  # complete
    assert len(ids) == len(set(ids))  # disjoint
    assert {len(part) for part in parts} == {2, 3}

    out = tmp_path / "out"
    assert _batch(cohort, "-o", out, "--model", model, "--workers", 0, "--part", "2/3") == 0
    assert {p.name for p in out.iterdir() if p.is_dir()} == {c.case_id for c in parts[1]}
    assert main(["batch", str(cohort), "-o", str(out), "--part", "4/3", "--workers", "0"]) == 2
    assert "--part must be I/N" in capsys.readouterr().err


def test_slurm_dry_run_prints_a_valid_job_script(tmp_path, capsys):
    pytest.importorskip("dask_jobqueue")
    code = _batch(
        tmp_path,
        "-o",
        tmp_path / "out",
        "--slurm",
        "--dry-run",
        "--cores",
        8,
        "--memory",
        "32GB",
        "--gpus",
        2,
        "--walltime",
        "02:30:00",
        "--queue",
        "gpu",
    )
    assert code == 0
    script = capsys.readouterr().out
    assert script.startswith("#!/usr/bin/env bash")
    for line in (
        "#SBATCH -p gpu",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH -t 02:30:00",
        "#SBATCH --gres=gpu:2",
    ):
        assert line in script, line
    assert "#SBATCH --mem=" in script and "distributed.cli.dask_worker" in script
    assert "--resources GPU=1" in script  # one worker process per GPU of the job
    assert "--nworkers 2" in script and "--nthreads 4" in script
    checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr
    assert not (tmp_path / "out").exists()  # nothing run, nothing written


def test_a_manifest_with_references_gives_dice_and_clear_errors(tmp_path, model, capsys):
    cohort = _cohort(tmp_path / "cohort", n_nifti=2, dicom=False, broken=False)
    # a reference for the first case (the model's own labels: Dice 1), none for the second
    reference = tmp_path / "ref0.nii.gz"
    assert (
        main(["segment", str(cohort / "case0.nii.gz"), "-o", str(reference), "--model", str(model)])
        == 0
    )
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(
        "case_id,image,reference\n"
        "first,cohort/case0.nii.gz,ref0.nii.gz\n"
        "second,cohort/case1.nii.gz,\n"
    )
    out = tmp_path / "out"
    assert _batch(manifest, "-o", out, "--model", model, "--workers", 0) == 0
    with open(out / "cohort.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    first = [row for row in rows if row["case_id"] == "first"]
    assert first and all(float(row["dice"]) == pytest.approx(1.0) for row in first)
    assert all(row["dice"] == "" for row in rows if row["case_id"] == "second")

    capsys.readouterr()
    bad = tmp_path / "bad.csv"
    bad.write_text("case_id,image\nx,cohort/missing.nii.gz\n")
    assert main(["batch", str(bad), "-o", str(out), "--workers", "0"]) == 2
    error = capsys.readouterr().err
    assert "bad.csv" in error and "line 2" in error and "missing.nii.gz does not exist" in error
    bad.write_text("case_id,image\nx,cohort/case0.nii.gz\nx,cohort/case1.nii.gz\n")
    assert main(["batch", str(bad), "-o", str(out), "--workers", "0"]) == 2
    assert "case id 'x' is used twice" in capsys.readouterr().err


def test_an_output_folder_inside_the_cohort_is_not_taken_for_cases(tmp_path, model, capsys):
    cohort = _cohort(tmp_path / "cohort", n_nifti=2, dicom=True, broken=False)
    out = cohort / "results"
    assert _batch(cohort, "-o", out, "--model", model, "--workers", 0, "--dicom-seg") == 0
    assert "3 cases: 3 done" in capsys.readouterr().out
    assert _batch(cohort, "-o", out, "--model", model, "--workers", 0, "--dicom-seg") == 0
    assert "3 cases: 0 done, 3 skipped" in capsys.readouterr().out
    assert {p.name for p in out.iterdir() if p.is_dir()} == {"case0", "case1", "patient9_ct"}
    capsys.readouterr()
    assert _batch(cohort, "-o", cohort, "--model", model, "--workers", 0) == 2
    assert "is the cohort folder itself" in capsys.readouterr().err


def test_an_existing_scheduler_runs_a_multichannel_manifest(tmp_path, capsys):
    """--scheduler: the cases run on a cluster started elsewhere; a two-channel model
    reads image_0000 and image_0001 of each manifest row, as medseg segment reads two
    inputs."""
    from distributed import LocalCluster

    two = write_unet_model(
        tmp_path / "two", name="two", in_channels=2, out_channels=3, roi_size=(16, 16, 16)
    )
    folder = tmp_path / "scans"
    folder.mkdir()
    rows = ["case_id,image_0000,image_0001"]
    for i in range(2):
        affine = make_affine("LPS", spacing=(0.9, 0.9, 2.0))
        for channel in range(2):
            nib.save(
                nib.Nifti1Image(_scan(10 * i + channel), affine),
                folder / f"p{i}_{channel:04d}.nii.gz",
            )
        rows.append(f"p{i},scans/p{i}_0000.nii.gz,scans/p{i}_0001.nii.gz")
    manifest = tmp_path / "cases.csv"
    manifest.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        code = _batch(manifest, "-o", out, "--model", two, "--scheduler", cluster.scheduler_address)
        workers = set(cluster.workers)
    assert code == 0
    printed = capsys.readouterr()
    assert "2 cases: 2 done" in printed.out and cluster.scheduler_address in printed.err
    assert len(workers) == 2
    for i in range(2):
        reference = tmp_path / f"p{i}_segment.nii.gz"
        assert (
            main(
                [
                    "segment",
                    str(folder / f"p{i}_0000.nii.gz"),
                    str(folder / f"p{i}_0001.nii.gz"),
                    "-o",
                    str(reference),
                    "--model",
                    str(two),
                ]
            )
            == 0
        )
        assert np.array_equal(_labels(out / f"p{i}" / "labels.nii.gz")[0], _labels(reference)[0])
        done = json.loads((out / f"p{i}" / "done.json").read_text())
        assert [Path(p["path"]).name for p in done["inputs"]] == [
            f"p{i}_0000.nii.gz",
            f"p{i}_0001.nii.gz",
        ]


def test_a_manifest_picks_one_series_of_a_folder_that_holds_two(tmp_path, model, capsys):
    folder = tmp_path / "study"
    affine = make_affine("LPS", spacing=(0.7, 0.7, 2.5))
    for number, seed in ((1, 3), (2, 4)):
        write_dicom_series(
            (_scan(seed) * 100).astype(np.int16),
            affine,
            folder,
            series_uid=f"1.2.826.0.1.3680043.8.498.{number}",
            series_number=number,
            file_names=[f"s{number}_{k:03d}.dcm" for k in range(14)],
            overwrite=number == 2,  # the second series goes into the same folder
        )
    manifest = tmp_path / "cases.csv"
    manifest.write_text(
        "case_id,image,series\nsecond,study,1.2.826.0.1.3680043.8.498.2\neither,study,\n"
    )
    out = tmp_path / "out"
    assert _batch(manifest, "-o", out, "--model", model, "--workers", 0, "--dicom-seg") == 0
    assert "2 cases: 1 done, 0 skipped (done before), 1 failed" in capsys.readouterr().out
    reference = tmp_path / "second.nii.gz"
    assert (
        main(
            [
                "segment",
                str(folder),
                "--series",
                "1.2.826.0.1.3680043.8.498.2",
                "-o",
                str(reference),
                "--model",
                str(model),
            ]
        )
        == 0
    )
    assert np.array_equal(_labels(out / "second" / "labels.nii.gz")[0], _labels(reference)[0])
    assert (out / "second" / "labels_seg.dcm").is_file()
    (failure,) = map(json.loads, (out / "failures.jsonl").read_text().splitlines())
    assert failure["case_id"] == "either" and "2 image series" in failure["error"]
    assert "in the manifest's series column" in failure["error"]
    assert "--series" not in failure["error"]  # batch has no such option


def test_a_worker_knows_its_gpu_from_its_name():
    from napari_medseg.cohort.worker_plugin import worker_index

    assert [worker_index(name) for name in ("0", "3", "SLURMCluster-12-1", "tcp-x", "")] == [
        0,
        3,
        1,
        0,
        0,
    ]
