"""Which precision a run uses (CPU bfloat16 only where native), and that it is the one used.

The "unsupported" and "supported" processors are simulated through the detection result
(:class:`CpuBf16Support`) handed to :func:`choose_precision`, not by patching torch; the
runs themselves use ``MEDSEG_CPU_BF16=force`` so bfloat16 really runs on this CPU
(emulated by oneDNN where the CPU lacks it: the labels are those of bfloat16, the time is
not).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from model_factory import write_unet_model

from napari_medseg.inference import Segmenter
from napari_medseg.inference.devices import (
    CPU_BF16_ENV,
    CpuBf16Support,
    choose_precision,
    cpu_bf16_support,
)
from napari_medseg.models.spec import ModelSpec
from napari_medseg.volume import Volume

CPU = torch.device("cpu")
NATIVE = CpuBf16Support(True, ("amx_bf16",), "AVX512")
UNSUPPORTED = CpuBf16Support(False, (), "AVX2")


@pytest.fixture
def auto_mode(monkeypatch):
    monkeypatch.setenv(CPU_BF16_ENV, "auto")


def test_bf16_is_chosen_only_on_a_cpu_that_has_it(auto_mode):
    native = choose_precision(CPU, True, cpu_support=NATIVE)
    assert (native.dtype, native.mixed) == ("bfloat16", True)
    assert "amx_bf16" in native.reason
    emulated = choose_precision(CPU, True, cpu_support=UNSUPPORTED)
    assert emulated.dtype == "float32" and "no native bfloat16" in emulated.reason
    assert choose_precision(CPU, False, cpu_support=NATIVE).dtype == "float32"  # --no-amp


def test_a_model_with_poor_agreement_keeps_float32_even_when_forced(monkeypatch):
    for mode in ("auto", "force"):
        monkeypatch.setenv(CPU_BF16_ENV, mode)
        kept = choose_precision(
            CPU, True, model_allows_cpu_bf16=False, cpu_support=NATIVE, model_name="lungs-ct"
        )
        assert kept.dtype == "float32" and "lungs-ct" in kept.reason


def test_the_environment_switch_and_other_devices(monkeypatch):
    monkeypatch.setenv(CPU_BF16_ENV, "off")
    assert choose_precision(CPU, True, cpu_support=NATIVE).dtype == "float32"
    monkeypatch.setenv(CPU_BF16_ENV, "force")
    forced = choose_precision(CPU, True, cpu_support=UNSUPPORTED)
    assert forced.dtype == "bfloat16" and "emulated" in forced.reason
    assert choose_precision(torch.device("cuda"), True).dtype == "float16"
    assert choose_precision(torch.device("mps"), True).dtype == "float32"


def test_detection_agrees_with_torch_and_with_the_cpu_flags():
    support = cpu_bf16_support()
    flags = ""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        pytest.skip("no /proc/cpuinfo on this system")
    assert ("amx_bf16" in support.features) == (" amx_bf16" in flags)
    assert ("avx512_bf16" in support.features) == (" avx512_bf16" in flags)
    assert support.capability == torch.backends.cpu.get_cpu_capability()


def _scan(seed=0):
    rng = np.random.default_rng(seed)
    array = rng.normal(0, 1, (24, 20, 18)).astype(np.float32)
    return Volume(array, np.diag([1.5, 1.5, 2.0, 1.0]))


def _conv_output_dtypes(segmenter):
    seen = set()

    def hook(module, inputs, output):
        seen.add(output.dtype)

    handles = [
        m.register_forward_hook(hook)
        for m in segmenter.network.modules()
        if isinstance(m, torch.nn.Conv3d | torch.nn.ConvTranspose3d)
    ]
    return seen, handles


def test_a_bf16_run_runs_bf16_and_says_so(tmp_path, monkeypatch):
    spec = write_unet_model(tmp_path / "model", roi_size=(16, 16, 16))
    monkeypatch.setenv(CPU_BF16_ENV, "force")
    segmenter = Segmenter(spec, device="cpu")
    seen, handles = _conv_output_dtypes(segmenter)
    result = segmenter.predict(_scan())
    for handle in handles:
        handle.remove()
    assert seen == {torch.bfloat16}
    assert result.settings["precision"] == "bfloat16" and result.settings["amp"] is True

    monkeypatch.setenv(CPU_BF16_ENV, "off")
    reference = Segmenter(spec, device="cpu").predict(_scan())
    assert reference.settings["precision"] == "float32"
    agreement = (result.labels == reference.labels).mean()
    assert 0.9 < agreement  # random weights, near-tied logits flip; real models: model cards


def test_float32_output_is_unchanged_when_amp_is_off(tmp_path, monkeypatch):
    spec = write_unet_model(tmp_path / "model", roi_size=(16, 16, 16))
    monkeypatch.setenv(CPU_BF16_ENV, "force")  # even where bf16 would be used
    segmenter = Segmenter(spec, device="cpu", amp=False)
    seen, handles = _conv_output_dtypes(segmenter)
    off = segmenter.predict(_scan(), return_probabilities=True)
    for handle in handles:
        handle.remove()
    assert seen == {torch.float32} and off.settings["precision"] == "float32"
    monkeypatch.setenv(CPU_BF16_ENV, "off")
    plain = Segmenter(spec, device="cpu").predict(_scan(), return_probabilities=True)
    assert np.array_equal(off.labels, plain.labels)
    assert np.array_equal(off.probabilities, plain.probabilities)


def test_a_spec_can_keep_float32(tmp_path, monkeypatch):
    path = write_unet_model(tmp_path / "model", roi_size=(16, 16, 16))
    data = json.loads(path.read_text())
    data["cpu_bf16"] = False
    path.write_text(json.dumps(data))
    assert ModelSpec.from_json(path).cpu_bf16 is False
    monkeypatch.setenv(CPU_BF16_ENV, "force")
    result = Segmenter(path, device="cpu").predict(_scan())
    assert result.settings["precision"] == "float32"
    assert "agree" in result.settings["precision_reason"]


def test_info_system_names_the_cpu_precision():
    run = subprocess.run(
        [sys.executable, "-m", "napari_medseg.cli", "info", "--system", "--json"],
        capture_output=True, text=True, check=True,
    )
    summary = json.loads(run.stdout)
    assert summary["cpu_bf16_native"] == cpu_bf16_support().native
    assert summary["cpu_precision"].startswith(("float32 (", "bfloat16 ("))
    text = subprocess.run(
        [sys.executable, "-m", "napari_medseg.cli", "info", "--system"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "bfloat16" in text and "CPU precision" in text


def test_a_model_running_its_authors_pipeline_keeps_float32_on_the_cpu(monkeypatch):
    for mode in ("auto", "force"):
        monkeypatch.setenv(CPU_BF16_ENV, mode)
        kept = choose_precision(
            CPU, True, cpu_support=NATIVE, model_name="brain-mask", own_pipeline=True
        )
        assert kept.dtype == "float32" and "brain-mask runs its authors' pipeline" in kept.reason
    assert choose_precision(torch.device("cuda"), True, own_pipeline=True).dtype == "float16"
