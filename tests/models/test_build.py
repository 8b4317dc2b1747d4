"""Building networks from specs: MONAI state_dicts, TorchScript, and every bad file."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
from model_factory import tiny_unet, write_threshold_model, write_unet_model

from napari_medseg.errors import FileError
from napari_medseg.models.build import build_network, load_spec_model, sha256_file
from napari_medseg.models.errors import ModelLoadError
from napari_medseg.models.loaded import LoadedModel
from napari_medseg.models.registry import load_model
from napari_medseg.models.spec import ModelSpec, ModelSpecError
from napari_medseg.volume import Volume


@pytest.fixture
def unet_spec(tmp_path):
    return write_unet_model(tmp_path / "model")


def spec_with(path, **changes) -> ModelSpec:
    spec = ModelSpec.from_json(path)
    return dataclasses.replace(spec, **changes)


def test_monai_network_with_its_weights(unet_spec):
    model = load_spec_model(ModelSpec.from_json(unet_spec), origin=str(unet_spec))
    assert isinstance(model, LoadedModel)
    network = model.network
    assert not network.training
    assert not any(p.requires_grad for p in network.parameters())
    reference = tiny_unet(3, 1, 3, seed=0)
    for key, value in reference.state_dict().items():
        assert torch.equal(network.state_dict()[key], value)
    assert model.details["weights_sha256"] == sha256_file(unet_spec.with_name("tiny.pt"))
    assert model.details["network"] == "monai.networks.nets.UNet"
    prepared = model.preprocess([Volume(np.zeros((5, 6, 7), np.float32), np.eye(4))])
    assert tuple(prepared.image.shape) == (1, 5, 6, 7)


def test_wrapped_and_data_parallel_checkpoints_load(unet_spec):
    weights = unet_spec.with_name("tiny.pt")
    state = torch.load(weights, weights_only=True)
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, weights)
    network, _ = build_network(ModelSpec.from_json(unet_spec))
    assert all(torch.equal(network.state_dict()[k], v) for k, v in state.items())


def test_sha256_checked(unet_spec):
    digest = sha256_file(unet_spec.with_name("tiny.pt"))
    build_network(spec_with(unet_spec, weights_sha256=digest.upper()))
    with pytest.raises(ModelLoadError, match="SHA-256 mismatch") as caught:
        build_network(spec_with(unet_spec, weights_sha256="0" * 64))
    assert "tiny.pt" in str(caught.value) and isinstance(caught.value, FileError)


def test_missing_weights_file(unet_spec):
    unet_spec.with_name("tiny.pt").unlink()
    with pytest.raises(ModelLoadError, match=r"tiny\.pt: weights file not found"):
        load_model(unet_spec)


def test_random_bytes_are_not_a_checkpoint(unet_spec):
    weights = unet_spec.with_name("tiny.pt")
    weights.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(ModelLoadError, match="is not a PyTorch checkpoint") as caught:
        load_model(unet_spec)
    assert str(weights) in str(caught.value)


def test_pickled_objects_are_refused(unet_spec):
    weights = unet_spec.with_name("tiny.pt")
    torch.save(tiny_unet(3, 1, 3), weights)  # a whole model object, not a state_dict
    with pytest.raises(ModelLoadError) as caught:
        load_model(unet_spec)
    assert str(caught.value) == (
        f"{weights}: holds Python objects that would run code when loaded (a pickled "
        "monai.networks.nets.unet.UNet); it is refused. Save plain weights (a state_dict) "
        "or TorchScript."
    )


class _Payload:
    """Unpickling this runs its payload: a loader that executes it writes the marker."""

    def __init__(self, call, argument):
        self.call, self.argument = call, argument

    def __reduce__(self):
        return (self.call, (self.argument,))


def _torch_zip(path, payload: bytes):
    """torch.save's layout (``archive/data.pkl``, ``archive/version``) around a pickle."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/byteorder", "little")


@pytest.mark.parametrize(
    ("layout", "protocol", "via", "refused"),
    [
        ("torch.save", 2, "os.system", "posix.system"),
        ("zip", 2, "eval", "builtins.eval"),
        ("raw", 2, "eval", "builtins.eval"),
        ("raw", 4, "eval", "builtins.eval"),  # protocol 4: torch's message names no global
    ],
)
def test_malicious_checkpoint_runs_no_code_and_says_so(
    unet_spec, tmp_path, layout, protocol, via, refused
):
    import os
    import pickle

    weights = unet_spec.with_name("tiny.pt")
    marker = tmp_path / "PWNED"
    if via == "os.system":
        payload = _Payload(os.system, f"touch {marker}")
    else:
        payload = _Payload(eval, f"open({str(marker)!r}, 'w').write('code ran')")
    if layout == "torch.save":
        torch.save({"weight": torch.zeros(2), "hook": payload}, weights)
    else:
        data = pickle.dumps({"state_dict": payload}, protocol=protocol)
        if layout == "zip":
            _torch_zip(weights, data)
        else:
            weights.write_bytes(data)
    with pytest.raises(ModelLoadError) as caught:
        load_model(unet_spec)
    assert not marker.exists()  # the payload never ran
    assert str(caught.value) == (
        f"{weights}: holds Python objects that would run code when loaded (a pickled "
        f"{refused}); it is refused. Save plain weights (a state_dict) or TorchScript."
    )
    assert "PyTorch 2.6" not in str(caught.value) and "\n" not in str(caught.value)


def test_plain_weights_in_pickle_protocol_4_are_named_as_such(unet_spec):
    weights = unet_spec.with_name("tiny.pt")
    state = torch.load(weights, weights_only=True)
    torch.save(state, weights, pickle_protocol=4)  # harmless, but weights-only cannot read it
    with pytest.raises(ModelLoadError, match="pickled with protocol 4") as caught:
        load_model(unet_spec)
    assert "would run code" not in str(caught.value) and "PyTorch 2.6" not in str(caught.value)


def test_mismatched_weights_say_which_keys(unet_spec):
    other = tiny_unet(3, 1, 4)  # 4 output channels where the spec builds 3
    state = other.state_dict()
    state["extra.weight"] = torch.zeros(2)
    state.pop(next(iter(state)))
    torch.save(state, unet_spec.with_name("tiny.pt"))
    with pytest.raises(ModelLoadError) as caught:
        load_model(unet_spec)
    message = str(caught.value)
    assert "tiny.pt" in message
    assert "1 missing keys" in message and "1 unexpected keys (extra.weight)" in message
    assert "shape mismatches" in message and "vs network" in message


def test_unknown_network_class(unet_spec):
    data = json.loads(unet_spec.read_text())
    data["network"]["name"] = "UNett"
    unet_spec.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="unknown MONAI network 'UNett'") as caught:
        load_model(unet_spec)
    assert str(unet_spec) in str(caught.value) and "UNet" in str(caught.value)


def test_bad_network_args(unet_spec):
    data = json.loads(unet_spec.read_text())
    data["network"]["args"]["colour"] = 3
    unet_spec.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="cannot build MONAI UNet"):
        load_model(unet_spec)


def test_torchscript_with_sidecar_spec(tmp_path):
    path = write_threshold_model(tmp_path, level=1.0)
    model = load_model(path)
    assert model.details["network"] == "torchscript"
    with torch.inference_mode():
        out = model.network(torch.tensor([[[[[0.0, 2.0]]]]]))
    assert out.argmax(1).flatten().tolist() == [0, 1]
    # the spec JSON alone loads too
    assert load_model(path.with_suffix(".json")).spec.name == "threshold"


def test_torchscript_kind_but_not_torchscript(tmp_path):
    path = write_threshold_model(tmp_path)
    torch.save({"w": torch.ones(2)}, path)  # a state_dict where TorchScript is expected
    with pytest.raises(ModelLoadError, match="is not a TorchScript file") as caught:
        load_model(path)
    assert str(path) in str(caught.value) and "network.kind 'monai'" in str(caught.value)
    path.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(ModelLoadError, match="is not a TorchScript file"):
        load_model(path)


def test_malicious_pickle_where_torchscript_is_expected(tmp_path):
    path = write_threshold_model(tmp_path)
    marker = tmp_path / "PWNED"
    payload = _Payload(eval, f"open({str(marker)!r}, 'w').write('code ran')")
    torch.save({"w": torch.ones(2), "hook": payload}, path)
    with pytest.raises(ModelLoadError) as caught:
        load_model(path)
    assert not marker.exists()
    # torch's first sentence only, not cut in a word nor its "internal miniz error" notes
    assert "(PytorchStreamReader failed locating file constants.pkl: file not found)." in str(
        caught.value
    )
    assert "miniz" not in str(caught.value)


def test_torchscript_where_a_state_dict_is_expected(unet_spec, tmp_path):
    script = write_threshold_model(tmp_path)
    unet_spec.with_name("tiny.pt").write_bytes(script.read_bytes())
    with pytest.raises(ModelLoadError, match="TorchScript archive"):
        load_model(unet_spec)


def test_network_file_without_sidecar_spec(tmp_path):
    path = tmp_path / "net.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(torch.nn.Identity()).save(str(path))
    with pytest.raises(ModelLoadError, match=r"net\.json not found") as caught:
        load_model(path)
    assert "docs/models.md" in str(caught.value)


def test_spec_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelSpecError, match="bad.json"):
        load_model(bad)
    bad.write_text(json.dumps({"name": "x"}))
    with pytest.raises(ModelSpecError, match="missing field"):
        load_model(bad)
