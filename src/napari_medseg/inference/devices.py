"""Choose where a network runs, and in which precision.

``"auto"`` picks CUDA, then Apple's MPS, then the CPU.

Mixed precision (``torch.autocast``), when asked for (the default, as MONAI's bundles
ask ``amp: true``), is chosen by :func:`choose_precision`:

* **CUDA**: float16.
* **CPU**: bfloat16 where the processor computes it natively (Intel AMX or AVX512-BF16,
  AMD Zen 4 AVX512-BF16; :func:`cpu_bf16_support`) and the model allows it
  (``ModelSpec.cpu_bf16``: False for a model whose measured float32/bfloat16 label
  agreement is below 99.5 %). Measured in the issue that brought it (a 2-core Xeon with
  AMX, 2 threads, channels_last_3d): 0.33x the float32 time for the spleen UNet and
  the 105-class SegResNet. Without native support oneDNN emulates bfloat16, which was
  measured 41x *slower* than float32 (spleen UNet, 4 windows of 96^3, AVX2-only AMD
  EPYC), so such CPUs run float32: mixed precision is never a slowdown.
* **MPS**: float32 (autocast support varies across torch versions).

``MEDSEG_CPU_BF16`` overrides the CPU choice: ``auto`` (default), ``off`` (always
float32), ``force`` (bfloat16 even where it is emulated: for measuring agreement on a
CPU without native support, never for speed).
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from typing import Any

from napari_medseg.errors import MedsegError

#: Device names the command line accepts (``cuda:N`` is accepted too).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(MedsegError):
    """The requested device does not exist on this machine."""


def resolve_device(name: str = "auto"):
    """The ``torch.device`` for a device name.

    Parameters
    ----------
    name : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
        ``"mps"``.

    Raises
    ------
    DeviceError
        When the device is not available (e.g. ``"cuda"`` on a machine without an
        NVIDIA GPU or with a CPU-only torch build), or the name is unknown.
    """
    import torch

    text = str(name or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise DeviceError(
            f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)} or cuda:N."
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "no usable GPU"
            raise DeviceError(
                f"device {name!r} requested but CUDA is not available (torch {torch.__version__},"
                f" {build}). Use --device cpu, or install a CUDA build of torch on a machine "
                "with an NVIDIA GPU."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA "
                "device(s) exist."
            )
    elif device.type == "mps":
        if not _mps_available():
            raise DeviceError(
                f"device {name!r} requested but Apple MPS is not available here; use --device cpu."
            )
    elif device.type != "cpu":
        raise DeviceError(
            f"unsupported device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}."
        )
    return device


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


#: Environment variable overriding the CPU's bfloat16 choice: auto, off or force.
CPU_BF16_ENV = "MEDSEG_CPU_BF16"
_CPU_BF16_MODES = ("auto", "off", "force")


@dataclass(frozen=True)
class CpuBf16Support:
    """Whether this CPU computes bfloat16 natively, and through which instructions.

    Attributes
    ----------
    native : bool
        True when oneDNN runs bfloat16 convolutions in hardware (AMX or AVX512-BF16).
    features : tuple of str
        The bfloat16 instruction sets found, e.g. ``("amx_bf16", "avx512_bf16")``.
    capability : str
        torch's CPU capability level (``"AVX2"``, ``"AVX512"``, ...).
    """

    native: bool
    features: tuple[str, ...] = ()
    capability: str = ""

    def describe(self) -> str:
        """One line for ``medseg info --system``, the log and the widget."""
        if self.native:
            return f"native bfloat16 ({', '.join(self.features)})"
        level = f" ({self.capability})" if self.capability else ""
        return f"no native bfloat16{level}: mixed precision runs float32 on this CPU"


@functools.lru_cache(maxsize=1)
def cpu_bf16_support() -> CpuBf16Support:
    """What this CPU offers for bfloat16, as torch and oneDNN see it (cached)."""
    import torch

    cpu = torch.cpu
    features = []
    if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        features.append("amx_bf16")
    if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
        features.append("avx512_bf16")
    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn = False
    capability = str(torch.backends.cpu.get_cpu_capability())
    return CpuBf16Support(bool(features) and onednn, tuple(features), capability)


def cpu_bf16_mode() -> str:
    """``MEDSEG_CPU_BF16`` (auto, off or force); ``auto`` when unset or unknown."""
    mode = os.environ.get(CPU_BF16_ENV, "auto").strip().lower()
    return mode if mode in _CPU_BF16_MODES else "auto"


@dataclass(frozen=True)
class Precision:
    """The precision a run uses, and why.

    Attributes
    ----------
    dtype : str
        ``"float32"``, ``"bfloat16"`` or ``"float16"``: the autocast type of the
        network's convolutions and matrix products (float32: no autocast).
    reason : str
        Why, in words, e.g. ``"AMP off"`` or ``"this CPU has no native bfloat16"``.
    """

    dtype: str
    reason: str

    @property
    def mixed(self) -> bool:
        """True when the network runs under autocast."""
        return self.dtype != "float32"

    def describe(self) -> str:
        """E.g. ``"bfloat16 (native on this CPU: amx_bf16)"``."""
        return f"{self.dtype} ({self.reason})"


def choose_precision(
    device,
    amp: bool,
    model_allows_cpu_bf16: bool = True,
    cpu_support: CpuBf16Support | None = None,
    model_name: str = "",
    own_pipeline: bool = False,
) -> Precision:
    """The precision of a run on ``device``.

    Parameters
    ----------
    device : torch.device
        Where the network runs.
    amp : bool
        Mixed precision asked for (``--amp``, the default; ``--no-amp`` turns it off).
    model_allows_cpu_bf16 : bool
        The model's ``cpu_bf16`` (False: its bf16 labels agree too poorly with float32).
    cpu_support : CpuBf16Support, optional
        What the CPU offers; :func:`cpu_bf16_support` when None (tests pass their own to
        see the choice on another processor).
    model_name : str
        Named in the reason when the model keeps float32.
    own_pipeline : bool
        The model runs its authors' pipeline (nnU-Net, deepbet): float32 on the CPU, as
        they run it.
    """
    if not amp:
        return Precision("float32", "mixed precision off")
    if device.type == "cuda":
        return Precision("float16", "CUDA autocast")
    if device.type != "cpu":
        return Precision("float32", f"no mixed precision on {device.type}")
    if own_pipeline:
        name = model_name or "this model"
        return Precision("float32", f"{name} runs its authors' pipeline, float32 on the CPU")
    mode = cpu_bf16_mode()
    if mode == "off":
        return Precision("float32", f"{CPU_BF16_ENV}=off")
    if not model_allows_cpu_bf16:
        return Precision(
            "float32",
            f"{model_name or 'this model'} runs float32: its bfloat16 labels agree with "
            "float32 on fewer than 99.5 % of voxels (see its model card)",
        )
    support = cpu_bf16_support() if cpu_support is None else cpu_support
    if mode == "force":
        how = "native" if support.native else "emulated: slow, for measuring agreement"
        return Precision("bfloat16", f"{CPU_BF16_ENV}=force, {how}")
    if support.native:
        return Precision("bfloat16", f"native on this CPU: {', '.join(support.features)}")
    return Precision("float32", "this CPU has no native bfloat16, which would be slower")


def autocast(device, dtype: str) -> Any:
    """Context manager: autocast to ``dtype`` on ``device``, or nothing for float32.

    ``dtype`` is a :attr:`Precision.dtype`.
    """
    import torch

    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, dtype))


def network_memory_format(device, spatial_dims: int) -> Any:
    """Memory layout for the network's weights and windows on ``device``, or None.

    3D networks on the CPU run in ``torch.channels_last_3d``: oneDNN's 3D convolutions
    are faster in that layout (measured on this project's 2-core test machine: 1.3x for
    a SegResNet, 1.4x for the spleen bundle's UNet on 4 windows of 96^3; outputs equal
    to float rounding). Elsewhere (GPU, 2D) the default layout is kept until measured.
    """
    import torch

    if device.type == "cpu" and spatial_dims == 3:
        return torch.channels_last_3d
    return None


def free_cached_memory(device) -> None:
    """Return cached blocks of the CUDA allocator (after an out-of-memory error)."""
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()


def system_summary() -> dict[str, Any]:
    """What this machine offers the networks (for ``medseg info --system``).

    Returns
    -------
    dict
        ``torch`` (version), ``threads`` (torch intra-op threads), ``cpu_capability``,
        ``cpu_bf16`` (:meth:`CpuBf16Support.describe`), ``cpu_bf16_native`` (bool),
        ``cpu_bf16_mode`` (``MEDSEG_CPU_BF16``), ``cpu_precision`` (what a CPU run with
        mixed precision on uses, and why), ``cuda`` (device names, [] without), ``mps``.
    """
    import torch

    support = cpu_bf16_support()
    cuda = []
    if torch.cuda.is_available():
        cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": support.capability,
        "cpu_bf16_native": support.native,
        "cpu_bf16": support.describe(),
        "cpu_bf16_mode": cpu_bf16_mode(),
        "cpu_precision": choose_precision(torch.device("cpu"), True).describe(),
        "cuda": cuda,
        "mps": _mps_available(),
    }
