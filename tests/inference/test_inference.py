"""The Segmenter: stitching, labels, probabilities, progress, cancel, TTA, 2D, fallbacks."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from model_factory import count_calls, random_volume, write_threshold_model, write_unet_model
from monai.inferers import sliding_window_inference as monai_sliding_window

from napari_medseg.errors import Cancelled
from napari_medseg.inference.devices import DeviceError, resolve_device
from napari_medseg.inference.segmenter import (
    InputChannelsError,
    ModelRunError,
    SegmentationResult,
    Segmenter,
)
from napari_medseg.labels.classes import LabelClass
from napari_medseg.models.registry import load_model
from napari_medseg.volume import Volume

AFFINE = np.diag([0.8, 0.9, 2.5, 1.0])


def volume(shape=(40, 30, 36), seed=0, affine=AFFINE):
    return Volume(random_volume(shape, seed), affine)


@pytest.fixture(scope="module")
def unet3d(tmp_path_factory):
    return write_unet_model(tmp_path_factory.mktemp("unet3d"), roi_size=(16, 16, 16))


@pytest.fixture(scope="module")
def unet2d(tmp_path_factory):
    return write_unet_model(
        tmp_path_factory.mktemp("unet2d"),
        name="tiny2d",
        spatial_dims=2,
        roi_size=(16, 16),
        sw_batch_size=3,
    )


def monai_labels(network, image, roi, overlap=0.25, batch=2):
    """MONAI's sliding_window_inference + argmax, with the margin of the best class."""
    with torch.inference_mode():
        logits = monai_sliding_window(
            torch.from_numpy(image)[None, None], roi, batch, network, overlap, mode="gaussian"
        )[0]
    top2 = torch.topk(logits, 2, dim=0).values
    return logits.argmax(0).numpy(), (top2[0] - top2[1]).numpy()


def test_stitched_labels_match_monai_and_stay_on_the_grid(unet3d):
    scan = volume()
    segmenter = Segmenter(unet3d, device="cpu")
    result = segmenter.predict(scan)
    assert isinstance(result, SegmentationResult)
    assert result.labels.shape == scan.shape and result.labels.dtype == np.uint8
    assert np.array_equal(result.affine, scan.affine) and result.affine is not scan.affine
    assert result.probabilities is None
    assert result.settings["n_windows"] > 8  # the volume is larger than the window
    expected, margin = monai_labels(segmenter.network, scan.array, (16, 16, 16))
    clear = margin > 1e-4
    assert np.array_equal(result.labels[clear], expected[clear])
    assert clear.mean() > 0.99
    assert len(np.unique(result.labels)) == 3  # not a degenerate constant network
    assert [c.name for c in result.label_classes] == ["background", "class1", "class2"]
    assert set(result.timings_s) == {"preprocess", "network", "postprocess", "total"}
    assert result.settings["device"] == "cpu" and result.settings["amp"] is False


def test_band_path_equals_full_accumulator_path(unet3d):
    """Labels finalised band by band == argmax of the full probability map kept whole."""
    scan = volume(seed=1)
    segmenter = Segmenter(unet3d, device="cpu", overlap=0.5)
    banded = segmenter.predict(scan)
    full = segmenter.predict(scan, return_probabilities=True)
    assert np.array_equal(banded.labels, full.labels)
    probabilities = full.probabilities
    assert probabilities.shape == (3, *scan.shape) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-5)
    assert np.array_equal(probabilities.argmax(axis=0), full.labels)


def test_load_once_predict_many(unet3d):
    segmenter = Segmenter(unet3d, device="cpu")
    network = segmenter.network
    calls = count_calls(network)
    first = segmenter.predict(volume(seed=2))
    n_first = calls[0]
    second = segmenter.predict(volume(shape=(20, 18, 17), seed=3))
    assert segmenter.network is network and calls[0] > n_first
    assert first.labels.shape == (40, 30, 36) and second.labels.shape == (20, 18, 17)


@pytest.mark.parametrize("tta", [False, True])
def test_progress_is_monotonic_and_ends_at_total_3d(unet3d, tta):
    segmenter = Segmenter(unet3d, device="cpu", tta=tta)
    calls = count_calls(segmenter.network)
    seen = []
    result = segmenter.predict(volume(), progress=lambda done, total: seen.append((done, total)))
    totals = {total for _, total in seen}
    assert len(totals) == 1
    (total,) = totals
    dones = [done for done, _ in seen]
    assert dones[0] == 0 and dones[-1] == total
    assert dones == sorted(dones) and len(set(dones)) == len(dones)
    assert total == calls[0] == result.settings["n_network_calls"]
    passes = 4 if tta else 1
    assert total == passes * -(-result.settings["n_windows"] // 2)


def test_progress_2d(unet2d):
    segmenter = Segmenter(unet2d, device="cpu")
    seen = []
    segmenter.predict(volume(shape=(20, 18, 10)), progress=lambda d, t: seen.append((d, t)))
    # 20 x 18 slices need 2 x 2 windows of 16 x 16: 40 windows, 3 per call -> 14 calls
    assert seen[-1] == (14, 14)
    assert [d for d, _ in seen] == list(range(15))


@pytest.mark.parametrize("k", [1, 3])
def test_cancel_stops_within_one_window_batch(unet3d, k):
    segmenter = Segmenter(unet3d, device="cpu")
    calls = count_calls(segmenter.network)
    cancel = threading.Event()

    def progress(done, total):
        if done == k:
            cancel.set()

    with pytest.raises(Cancelled):
        segmenter.predict(volume(), progress=progress, cancel=cancel)
    assert calls[0] <= k + 1


def test_cancel_before_start_runs_nothing(unet3d):
    segmenter = Segmenter(unet3d, device="cpu")
    calls = count_calls(segmenter.network)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        segmenter.predict(volume(), cancel=cancel)
    assert calls[0] == 0


def test_tta_averages_softmax_over_per_window_flips(unet3d):
    """TTA = blending, per window, the mean softmax of the identity and the 3 axis flips."""
    scan = volume(shape=(30, 24, 20), seed=5)
    segmenter = Segmenter(unet3d, device="cpu", tta=True)
    result = segmenter.predict(scan, return_probabilities=True)
    network = segmenter.network

    def tta(window):
        passes = [network(window)] + [network(window.flip(axis)).flip(axis) for axis in (2, 3, 4)]
        return torch.stack([torch.softmax(p, 1) for p in passes]).mean(0)

    with torch.inference_mode():
        expected = monai_sliding_window(
            torch.from_numpy(scan.array)[None, None], (16, 16, 16), 2, tta, 0.25, mode="gaussian"
        )[0].numpy()
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    assert result.settings["tta_flips"] == [
        "identity",
        "flip model-grid axis 0",
        "flip model-grid axis 1",
        "flip model-grid axis 2",
    ]
    plain = Segmenter(unet3d, device="cpu").predict(scan)
    assert not np.array_equal(plain.labels, result.labels)  # the flips did something


def test_2d_batched_slices_equal_per_slice_inference(unet2d):
    """Windows of several slices per call give MONAI's 2D sliding window on each slice."""
    scan = volume(shape=(22, 19, 7), seed=6)
    segmenter = Segmenter(unet2d, device="cpu")
    result = segmenter.predict(scan, return_probabilities=True)
    network = segmenter.network
    with torch.inference_mode():
        for k in range(scan.shape[2]):
            image = torch.from_numpy(scan.array[:, :, k])[None, None]
            logits = monai_sliding_window(image, (16, 16), 1, network, 0.25, mode="gaussian")[0]
            np.testing.assert_allclose(
                result.probabilities[:, :, :, k], torch.softmax(logits, 0).numpy(), atol=1e-5
            )
    assert result.settings["slice_axis"] == 2 and result.settings["band_axis"] == 2


def test_2d_along_another_slice_axis(tmp_path):
    spec = write_threshold_model(tmp_path, level=0.0, spatial_dims=2, roi_size=(8, 8), slice_axis=0)
    scan = volume(shape=(6, 20, 13), seed=7)
    result = Segmenter(spec, device="cpu", tta=True).predict(scan)
    assert np.array_equal(result.labels, (scan.array > 0).astype(np.uint8))
    assert result.settings["slice_axis"] == 0
    assert result.settings["tta_flips"] == [
        "identity",
        "flip model-grid axis 1",
        "flip model-grid axis 2",
    ]


def test_sigmoid_channels_painted_in_order(tmp_path):
    """Sigmoid models: channel c painted where sigmoid >= 0.5, later pairs on top."""
    spec = write_threshold_model(
        tmp_path,
        level=0.0,
        activation="sigmoid",
        labels=(LabelClass(0, "background"), LabelClass(2, "core"), LabelClass(4, "edge")),
        paint_order=((0, 4), (1, 2)),
    )
    scan = volume(shape=(20, 20, 12), seed=8)
    result = Segmenter(spec, device="cpu").predict(scan)
    x = scan.array
    expected = np.zeros(x.shape, np.uint8)
    expected[-x >= 0] = 4  # channel 0 = level - x
    expected[x >= 0] = 2  # channel 1 = x - level, painted last
    assert np.array_equal(result.labels, expected)


def test_threshold_and_padding_value_a_bundle_declares_are_used(tmp_path):
    """A bundle's ``AsDiscreted(threshold=...)`` and inferer ``cval`` reach the engine.

    The bundle loader passes them in ``LoadedModel.details`` (as ``padding_mode``).
    """
    network = write_threshold_model(
        tmp_path, level=0.0, activation="sigmoid", paint_order=((1, 1),), roi_size=(8, 8, 8)
    )
    model = load_model(network)
    model.details.update(threshold=0.6, cval=3.0)
    scan = volume(shape=(12, 11, 6), seed=9)  # smaller than the window along K: padded
    result = Segmenter(model, device="cpu").predict(scan, return_probabilities=True)
    x = scan.array.astype(np.float64)
    assert np.array_equal(result.labels, (1 / (1 + np.exp(-x)) >= 0.6).astype(np.uint8))
    assert 0 < result.labels.sum() < (x >= 0).sum()  # 0.6 is not 0.5 here

    # cval: a padding-aware network sees the bundle's fill value around the scan
    seen = []

    class Records(torch.nn.Module):
        def forward(self, x):
            seen.append(float(x[:, :, :, :, 0].max()))  # first plane along K: padding only
            return torch.cat([x[:, :1], -x[:, :1]], dim=1)

    model.network = Records()
    model.details["threshold"] = 0.5
    Segmenter(model, device="cpu").predict(volume(shape=(8, 8, 4), seed=1))
    assert seen and seen[0] == 3.0


def test_paint_order_naming_a_channel_the_network_lacks(tmp_path):
    """A sigmoid spec painting channel 5 of a 2-channel network: a clear error naming it."""
    network = write_threshold_model(
        tmp_path, level=0.0, activation="sigmoid", paint_order=((0, 1), (5, 2))
    )
    segmenter = Segmenter(network, device="cpu")
    with pytest.raises(ModelRunError, match=r"paint_order names output channel\(s\) \[5\]") as e:
        segmenter.predict(volume(shape=(10, 9, 8)))
    assert str(network.with_suffix(".json")) in str(e.value)


def test_multichannel_input_and_wrong_channel_count(tmp_path):
    spec = write_unet_model(tmp_path, in_channels=2, roi_size=(16, 16, 16))
    segmenter = Segmenter(spec, device="cpu")
    a, b = volume(seed=1), volume(seed=2)
    assert segmenter.predict([a, b]).labels.shape == a.shape
    with pytest.raises(InputChannelsError, match="2 input channel") as error:
        segmenter.predict(a)
    assert "Give 2 input scan(s), in this order, all on one voxel grid." in str(error.value)
    moved = Volume(b.array, AFFINE @ np.diag([1, 1, 2, 1.0]))
    with pytest.raises(InputChannelsError, match="one voxel grid"):
        segmenter.predict([a, moved])


def test_uint16_labels_for_many_classes(tmp_path):
    spec = write_unet_model(tmp_path, out_channels=300, roi_size=(8, 8, 8))
    result = Segmenter(spec, device="cpu").predict(volume(shape=(10, 9, 8)))
    assert result.labels.dtype == np.uint16 and result.labels.max() > 255


def test_out_of_memory_falls_back_and_keeps_progress_monotonic(unet3d):
    """The retry path (CUDA OOM cannot happen here): one window per call, same labels."""
    segmenter = Segmenter(unet3d, device="cpu", sw_batch_size=4)
    scan = volume(shape=(30, 24, 20))
    reference = segmenter.predict(scan).labels
    real = segmenter.network
    failures = [1]

    class RunsOutOnce(torch.nn.Module):
        def forward(self, x):
            if failures[0] and x.shape[0] > 1:
                failures[0] -= 1
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            return real(x)

    segmenter.network = RunsOutOnce()
    seen = []
    result = segmenter.predict(scan, progress=lambda d, t: seen.append((d, t)))
    assert np.array_equal(result.labels, reference)
    assert any("one window per call" in w for w in result.warnings)
    assert result.settings["sw_batch_size_used"] == 1
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and dones[-1] == seen[0][1]


def test_out_of_memory_frees_the_failed_attempt_before_emptying_the_cache(unet3d, monkeypatch):
    """The allocator cache is emptied once the failed attempt's tensors are gone.

    Emptying it while the exception's traceback still holds the failed pass's frames
    (windows, accumulators, padded image) returns nothing to the device.
    """
    import weakref

    from napari_medseg.inference import devices

    segmenter = Segmenter(unet3d, device="cpu", sw_batch_size=4)
    real = segmenter.network
    failed = []

    class RunsOutOnce(torch.nn.Module):
        def forward(self, x):
            if not failed:
                failed.append(weakref.ref(x))
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            return real(x)

    alive_when_emptied = []
    monkeypatch.setattr(
        devices,
        "free_cached_memory",
        lambda device: alive_when_emptied.append(failed[0]() is not None),
    )
    segmenter.network = RunsOutOnce()
    segmenter.predict(volume(shape=(30, 24, 20)))
    assert alive_when_emptied == [False]


def test_out_of_memory_without_a_cuda_error_type_is_a_memory_error(unet3d):
    """MPS reports running out of memory as a plain RuntimeError: still a clear error."""
    from napari_medseg.inference.segmenter import InferenceMemoryError

    segmenter = Segmenter(unet3d, device="cpu")

    class RunsOut(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB)")

    segmenter.network = RunsOut()
    with pytest.raises(InferenceMemoryError, match="ran out of memory.*--device cpu"):
        segmenter.predict(volume(shape=(16, 16, 16)))


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    # "auto" takes CUDA, then MPS, then the CPU: the first this machine has
    if torch.cuda.is_available():
        expected = "cuda"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        expected = "mps"
    else:
        expected = "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu9")


def test_bundle_details_warnings_are_passed_on(unet3d):
    model = load_model(unet3d)
    model.details["warnings"] = ["a bundle warning"]
    result = Segmenter(model, device="cpu").predict(volume(shape=(16, 16, 16)))
    assert result.warnings == ["a bundle warning"]


def test_cpu_3d_networks_run_channels_last_with_the_same_results(unet3d):
    """The CPU layout (channels_last_3d, faster oneDNN convolutions) changes no label."""
    scan = volume(seed=4)
    fast = Segmenter(load_model(unet3d), device="cpu")
    assert fast.memory_format is torch.channels_last_3d
    layouts = []
    hook = fast.network.register_forward_pre_hook(
        lambda module, args: layouts.append(
            args[0].is_contiguous(memory_format=torch.channels_last_3d)
        )
    )
    fast_result = fast.predict(scan, return_probabilities=True)
    hook.remove()
    assert layouts and all(layouts)

    plain = Segmenter(load_model(unet3d), device="cpu")
    plain.memory_format = None
    plain.network = plain.network.to(memory_format=torch.contiguous_format)
    plain_result = plain.predict(scan, return_probabilities=True)
    np.testing.assert_allclose(
        fast_result.probabilities, plain_result.probabilities, rtol=0, atol=1e-5
    )
    top2 = np.sort(plain_result.probabilities, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-4
    assert clear.mean() > 0.99
    assert np.array_equal(fast_result.labels[clear], plain_result.labels[clear])
