"""Build a ready-to-run network from a :class:`~napari_medseg.models.spec.ModelSpec`.

Two kinds of network (``spec.network.kind``):

``"monai"``
    ``getattr(monai.networks.nets, name)(**args)``, then its ``state_dict`` from the
    weights file, read with ``torch.load(..., weights_only=True)``: a checkpoint that
    holds pickled Python objects (a whole model, custom classes) is refused, because
    unpickling it could run arbitrary code.
``"medseg"``
    One of the project's own architectures (:mod:`napari_medseg.models.networks`),
    built with ``args`` and loaded from a ``state_dict`` the same safe way.
``"torchscript"``
    ``torch.jit.load`` of the weights file: any architecture (DeepLabV3+, SwinUNETR,
    nnU-Net exports...) with the JSON spec saying how to feed it.

Either way the network comes back on the CPU, in eval mode, with gradients off; the
:class:`~napari_medseg.inference.segmenter.Segmenter` moves it to its device. Every problem
raises :class:`~napari_medseg.models.errors.ModelLoadError` naming the file at fault.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

from napari_medseg.models.errors import SPEC_DOCS, ModelLoadError
from napari_medseg.models.licence import licence_details
from napari_medseg.models.loaded import LoadedModel
from napari_medseg.models.preprocess import prepare_spec_input
from napari_medseg.models.spec import ModelSpec

#: Keys under which training code often nests the ``state_dict`` in a checkpoint.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "network", "net")

#: How many offending keys an error message lists.
_SHOW = 4


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def check_weights_file(path: Path, expected_sha256: str = "") -> str:
    """Check a weights file exists (and matches its hash); return its SHA-256.

    Raises
    ------
    ModelLoadError
        The file is missing, is a folder, or its SHA-256 differs from ``expected_sha256``.
    """
    if not path.exists():
        raise ModelLoadError(
            path, "weights file not found.", "Check the path, or the 'weights' field of the spec."
        )
    if path.is_dir():
        raise ModelLoadError(path, "is a folder, not a weights file.")
    digest = sha256_file(path)
    if expected_sha256 and digest.lower() != expected_sha256.strip().lower():
        raise ModelLoadError(
            path,
            f"SHA-256 mismatch: the spec expects {expected_sha256.strip().lower()}, "
            f"the file has {digest}.",
            "The file is corrupt or not the one the spec was written for; download it again "
            "or update 'weights_sha256'.",
        )
    return digest


def _is_tensor_dict(value: Any) -> bool:
    import torch

    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def read_state_dict(path: Path) -> dict[str, Any]:
    """Read a ``state_dict`` with ``torch.load(weights_only=True)``.

    A state dict nested under one of :data:`WRAPPER_KEYS` (training checkpoints) is
    unwrapped, and a ``module.`` prefix on every key (``DataParallel``) is removed.

    Raises
    ------
    ModelLoadError
        Not a PyTorch checkpoint; pickled objects that ``weights_only`` refuses; a
        TorchScript archive; no tensors in it.
    """
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note when it sees a TorchScript zip
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = _unsupported_global(str(error)) or _first_unsafe_global(path)
        if found:
            raise ModelLoadError(
                path,
                f"holds Python objects that would run code when loaded (a pickled {found}); "
                "it is refused.",
                "Save plain weights (a state_dict) or TorchScript.",
            ) from None
        protocol = _pickle_protocol(path)
        if "Unsupported operand" in str(error) and protocol > 2:
            raise ModelLoadError(
                path,
                f"is pickled with protocol {protocol}, which safe (weights-only) loading "
                "cannot read.",
                "Save it again with torch.save(model.state_dict(), path) and torch's default "
                "pickle protocol.",
            ) from None
        raise _not_a_checkpoint(path, error) from None
    except RuntimeError as error:
        if "TorchScript" in str(error):
            raise ModelLoadError(
                path,
                "is a TorchScript archive, but the spec's network kind is 'monai' "
                "(which expects a state_dict).",
                "Set network.kind to 'torchscript' in the spec. " + SPEC_DOCS,
            ) from None
        raise _not_a_checkpoint(path, error) from None
    except Exception as error:  # any other parse failure: not a checkpoint at all
        raise _not_a_checkpoint(path, error) from None
    if isinstance(data, dict) and not _is_tensor_dict(data):
        for key in WRAPPER_KEYS:
            if _is_tensor_dict(data.get(key)):
                data = data[key]
                break
    if not _is_tensor_dict(data):
        kind = type(data).__name__
        raise ModelLoadError(
            path,
            f"is a PyTorch file but holds no state_dict (a {kind} without named tensors).",
            "Save it with torch.save(model.state_dict(), path).",
        )
    if all(key.startswith("module.") for key in data):
        data = {key[len("module.") :]: value for key, value in data.items()}
    return data


def _unsupported_global(message: str) -> str:
    """The global torch's weights-only unpickler refused, if its message names it.

    Two wordings: ``Unsupported global: GLOBAL x.Y was not an allowed global`` and
    ``Trying to load unsupported GLOBAL posix.system whose module posix is blocked``.
    """
    found = re.search(r"unsupported GLOBAL (\S+)|Unsupported global: GLOBAL (\S+)", message)
    if not found:
        return ""
    name = next(name for name in found.groups() if name)
    return name if "." in name else f"builtins.{name}"  # torch drops "builtins."


def _safe_globals() -> set[str]:
    """Globals torch's weights-only unpickler accepts (``module.name``)."""
    import torch

    names: set[str] = set()
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        names.update(_get_allowed_globals())
    except (ImportError, AttributeError):  # private API: fall back to torch's own names
        pass
    for item in torch.serialization.get_safe_globals():
        item = item[0] if isinstance(item, tuple) else item
        names.add(f"{getattr(item, '__module__', '')}.{getattr(item, '__qualname__', item)}")
    return names


def _pickle_streams(path: Path):
    """The pickles of a checkpoint, as binary files: ``data.pkl`` of a torch zip, or the file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith("data.pkl"):
                    with archive.open(name) as handle:
                        yield handle
        return
    with open(path, "rb") as handle:  # torch's legacy format: several pickles in a row
        yield handle


def _pickle_protocol(path: Path) -> int:
    """The protocol of a checkpoint's (first) pickle, from its PROTO opcode; 0 if none."""
    try:
        for stream in _pickle_streams(path):
            head = stream.read(2)
            return head[1] if len(head) == 2 and head[0] == 0x80 else 0
    except (OSError, zipfile.BadZipFile):
        pass
    return 0


def _first_unsafe_global(path: Path, max_pickles: int = 5) -> str:
    """The first global a checkpoint's pickles import that weights-only loading refuses.

    Walks the opcodes with :func:`pickletools.genops` (which runs nothing), for when
    torch's message does not name the global (e.g. pickle protocol 4, whose FRAME
    opcode torch stops at first). ``""`` when none is found.
    """
    import pickletools

    safe = _safe_globals()
    try:
        for stream in _pickle_streams(path):
            for _ in range(max_pickles):
                strings: list[str] = []  # string pushes, for STACK_GLOBAL's module and name
                memo: dict[int, str | None] = {}
                top: str | None = None  # the last push when it is a string
                ops = 0
                for opcode, arg, _pos in pickletools.genops(stream):
                    ops += 1
                    name = opcode.name
                    if name == "GLOBAL":
                        found = str(arg).replace(" ", ".", 1)
                    elif name == "STACK_GLOBAL" and len(strings) >= 2:
                        found = f"{strings[-2]}.{strings[-1]}"
                    else:
                        if name == "MEMOIZE":
                            memo[len(memo)] = top
                        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                            memo[int(arg)] = top
                        else:
                            if name in ("BINGET", "LONG_BINGET", "GET"):
                                top = memo.get(int(arg))
                            else:
                                top = arg if isinstance(arg, str) and "UNICODE" in name else None
                            if top is not None:
                                strings.append(top)
                        continue
                    found = re.sub(r"^__builtin__\.", "builtins.", found)  # protocol 2
                    if found not in safe and found.removeprefix("builtins.") not in safe:
                        return found
                if not ops:
                    break
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError):
        pass  # a damaged stream: report what torch said instead
    return ""


def _not_a_checkpoint(path: Path, error: BaseException) -> ModelLoadError:
    text = str(error)
    if "WeightsUnpickler error:" in text:  # torch's long note, then the actual reason
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    elif "Weights only load failed" in text:  # torch's advice alone: drop it
        lines = [
            line
            for line in text.splitlines()
            if line.strip() and "PyTorch 2.6" not in line and "weights_only" not in line
        ]
        text = lines[0].strip() if lines else ""
    reason = type(error).__name__ + (f": {text.splitlines()[0]}" if text else "")
    return ModelLoadError(
        path,
        f"is not a PyTorch checkpoint ({reason[:160]}).",
        "Point the spec at the .pt/.pth file written by torch.save(model.state_dict(), ...).",
    )


def monai_network_class(name: str, origin: str):
    """The class ``monai.networks.nets.<name>``; raises ``ModelLoadError`` if unknown."""
    import monai.networks.nets as nets
    import torch

    found = getattr(nets, name, None) if name and not name.startswith("_") else None
    if isinstance(found, type) and issubclass(found, torch.nn.Module):
        return found
    choices = [n for n in dir(nets) if isinstance(getattr(nets, n), type) and not n.startswith("_")]
    close = difflib.get_close_matches(name, choices, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ModelLoadError(
        origin,
        f"unknown MONAI network {name!r} (not a class of monai.networks.nets).{hint}",
        "Use a MONAI class name such as UNet, SegResNet or SwinUNETR, or a TorchScript file "
        "for other architectures. " + SPEC_DOCS,
    )


def state_dict_mismatches(network, state: dict[str, Any]) -> list[str]:
    """What keeps ``state`` from loading into ``network``, one phrase per kind of problem
    (missing keys, unexpected keys, shape mismatches, a few of each named); [] if none."""
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs network {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    for title, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
    ):
        if items:
            shown = "; ".join(items[:_SHOW]) + ("; ..." if len(items) > _SHOW else "")
            problems.append(f"{len(items)} {title} ({shown})")
    return problems


def check_state_dict(network, state: dict[str, Any], path: Path, description: str) -> None:
    """Raise ``ModelLoadError`` listing missing, unexpected and mis-shaped keys."""
    problems = state_dict_mismatches(network, state)
    if problems:
        raise ModelLoadError(
            path,
            f"weights do not fit {description}: " + ", ".join(problems) + ".",
            "Check that network.name and network.args in the spec (channels, strides, "
            "in/out channels, spatial_dims) match the code that trained these weights.",
        )


def build_monai_network(spec: ModelSpec, weights: Path, origin: str):
    """A MONAI network from the spec with the weights in ``weights`` loaded (CPU, eval)."""
    cls = monai_network_class(spec.network.name, origin)
    args = dict(spec.network.args)
    for key in ("spatial_dims", "in_channels"):
        if key in args and args[key] != getattr(spec, key):
            raise ModelLoadError(
                origin,
                f"network.args {key} is {args[key]!r} but the spec's {key} is "
                f"{getattr(spec, key)!r}: the engine would feed the network the wrong input.",
                "Make them agree. " + SPEC_DOCS,
            )
    description = f"MONAI {spec.network.name}({', '.join(f'{k}={v!r}' for k, v in args.items())})"
    try:
        network = cls(**args)
    except (TypeError, ValueError, AssertionError, KeyError) as error:
        raise ModelLoadError(
            origin,
            f"cannot build {description}: {str(error).rstrip('.')}.",
            "Fix network.args in the spec (keyword arguments of the MONAI class). " + SPEC_DOCS,
        ) from None
    state = read_state_dict(weights)
    check_state_dict(network, state, weights, description)
    network.load_state_dict(state, strict=True)
    return network


def build_own_network(spec: ModelSpec, weights: Path, origin: str):
    """One of the project's networks (``network.kind = "medseg"``) with its weights."""
    from napari_medseg.models.networks import NETWORKS

    cls = NETWORKS.get(spec.network.name)
    if cls is None:
        raise ModelLoadError(
            origin,
            f"unknown network {spec.network.name!r} for kind 'medseg' "
            f"(known: {', '.join(sorted(NETWORKS))}).",
            SPEC_DOCS,
        )
    args = dict(spec.network.args)
    description = f"{spec.network.name}({', '.join(f'{k}={v!r}' for k, v in args.items())})"
    try:
        network = cls(**args)
    except (TypeError, ValueError) as error:
        raise ModelLoadError(
            origin, f"cannot build {description}: {str(error).rstrip('.')}.", SPEC_DOCS
        ) from None
    state = read_state_dict(weights)
    check_state_dict(network, state, weights, description)
    network.load_state_dict(state, strict=True)
    return network


def load_torchscript(path: Path):
    """``torch.jit.load`` a TorchScript file on the CPU; ``ModelLoadError`` if it is not one."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.10 deprecates jit
            return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as error:
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        detail = text.split(". ", 1)[0].rstrip(".")[:200]  # torch's first sentence
        hint = ""
        if "constants.pkl" in str(error):
            hint = (
                " It looks like a torch.save checkpoint: use network.kind 'monai' for a state_dict."
            )
        raise ModelLoadError(
            path,
            f"is not a TorchScript file ({detail}).{hint}",
            "Export the model with torch.jit.script(model).save(path) or "
            "torch.jit.trace(model, example).save(path). " + SPEC_DOCS,
        ) from None


def build_network(spec: ModelSpec, origin: str = "") -> tuple[Any, str]:
    """Build the network of ``spec`` with its weights; return it and the weights' SHA-256.

    Parameters
    ----------
    spec : ModelSpec
        ``network`` says how to build it, ``weights`` (relative to ``base_dir``) which
        file to load, ``weights_sha256`` (optional) what it must hash to.
    origin : str
        The spec file, named by errors about the spec itself (unknown class, bad args).

    Returns
    -------
    network : torch.nn.Module
        On the CPU, in eval mode, ``requires_grad`` off.
    sha256 : str
        Hex SHA-256 of the weights file.
    """
    weights = spec.weights_path
    origin = origin or f"model spec {spec.name!r}"
    digest = check_weights_file(weights, spec.weights_sha256)
    if spec.network.kind == "torchscript":
        network = load_torchscript(weights)
    elif spec.network.kind == "medseg":
        network = build_own_network(spec, weights, origin)
    else:
        network = build_monai_network(spec, weights, origin)
    network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network, digest


def load_spec_model(spec: ModelSpec, origin: str = "") -> LoadedModel:
    """A :class:`LoadedModel` for a spec: its network, and :func:`prepare_spec_input`.

    Parameters
    ----------
    spec : ModelSpec
        The model (default model, MONAI network with a state_dict, or TorchScript).
    origin : str
        Where the spec came from (its JSON file or catalogue name), for errors and
        provenance.
    """
    network, digest = build_network(spec, origin)
    names = {
        "torchscript": "torchscript",
        "medseg": f"napari_medseg.models.networks.{spec.network.name}",
        "monai": f"monai.networks.nets.{spec.network.name}",
    }
    details = {
        "network": names[spec.network.kind],
        "weights": str(spec.weights_path),
        "weights_sha256": digest,
        **licence_details(spec),
    }
    preprocess = functools.partial(prepare_spec_input, spec)
    postprocess = None
    if spec.pipeline.get("kind") == "brainchop":
        from napari_medseg.models import brainchop

        try:
            postprocess = brainchop.postprocess_for(spec)
        except ValueError as error:
            raise ModelLoadError(origin, f"bad pipeline: {error}.", SPEC_DOCS) from None
        preprocess = functools.partial(brainchop.prepare_brainchop_input, spec)
        details["pipeline"] = dict(spec.pipeline)
    return LoadedModel(
        spec=spec,
        network=network,
        preprocess=preprocess,
        postprocess_labels=postprocess,
        source=origin or spec.name,
        details=details,
    )
