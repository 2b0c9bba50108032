"""The one place that picks a device and a precision (extract, the mlp head, recommend, bench).

`check_device_name` reads the text only (configs are checked before torch is imported);
`resolve_device` turns it into a torch.device and refuses a CUDA device that is not visible.
Precision: bf16 autocast where the hardware has bf16 (CUDA GPUs, CPUs with AVX512-BF16/AMX;
fp16 on older GPUs), fp32 elsewhere.
"""

from __future__ import annotations

import contextlib
import re

from pipelines.core.errors import ConfigError

DEVICE_NAMES = "auto, cpu, cuda or cuda:N"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device_name(name: str, what: str = "--device", fix: str = "pass one of them") -> str:
    """`name` when it is auto, cpu, cuda or cuda:N (no torch needed); else one line naming the fix."""
    if not isinstance(name, str) or not _DEVICE.fullmatch(name):
        raise ConfigError(f"{what} = {name!r} is not {DEVICE_NAMES}; {fix}")
    return name


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def auto_device_name(requested: str) -> str:
    """"auto" -> "cuda" when torch sees a GPU, else "cpu"; any other name as given."""
    if requested != "auto":
        return requested
    return "cuda" if cuda_available() else "cpu"


def resolve_device(requested: str, option: str = "--device "):
    """The torch.device for auto | cpu | cuda | cuda:N; a CUDA device that is not visible is refused.
    `option` is how the user spells the setting, with its separator ("--device ", "--param device=")."""
    import torch

    if requested == "auto":
        return torch.device(auto_device_name(requested))
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {requested!r} ({option.strip(' =')}); use {DEVICE_NAMES}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{option}{requested} asked for, but no CUDA GPU is visible; use {option}cpu or auto")
    return device


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls/convs run in hardware (elsewhere they are emulated, slower)."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older torch without the probes: stay safe
        return False


def resolve_precision(requested: str, device) -> str:
    """auto: bf16 where the hardware runs it natively (fp16 on GPUs without bf16), else fp32."""
    if requested not in PRECISIONS:
        raise ConfigError(f"unknown precision {requested!r}; use one of {', '.join(PRECISIONS)}")
    if requested == "fp16" and device.type != "cuda":
        raise ConfigError("--precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast_for(device, precision: str):
    """The autocast context for a resolved precision (fp32: none).

    bf16 on a CPU with AVX512-BF16 measured 1.8x (resnet50) and 2.6x (lite0) over fp32, with
    embeddings at cosine similarity > 0.999 to the fp32 ones.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
