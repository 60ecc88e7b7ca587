"""Device and floating-point precision, for training and inference alike: bf16/fp16 where the device has them,
fp32 on CPU. `compute_identity` names what a stage's results depend on (device type and resolved precision), so
a stage run in fp32 on a CPU is not taken as fresh on a bf16 GPU."""

from __future__ import annotations

from typing import Literal

from rtune.errors import InputError

Precision = Literal["auto", "fp32", "fp16", "bf16"]


def resolve_device(device: str | None) -> str:
    """`device`, or cuda when one is visible, else cpu."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def precision_flags(precision: str, device: str | None) -> dict[str, bool]:
    """`auto`: bf16 on CUDA that has it, else fp16 on CUDA, else fp32. Explicit fp16 needs CUDA."""
    import torch

    cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if precision == "auto":
        if cuda and torch.cuda.is_bf16_supported():
            return {"bf16": True, "fp16": False}
        return {"bf16": False, "fp16": cuda}
    if precision == "fp16" and not cuda:
        raise InputError("--precision fp16 needs a CUDA device; valid here: auto, fp32, bf16")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def inference_dtype(precision: str, device: str):
    """`auto`: bf16 on CUDA that has it, fp16 on other CUDA, fp32 elsewhere. Explicit fp16 needs CUDA."""
    import torch

    flags = precision_flags(precision, device)
    return torch.bfloat16 if flags["bf16"] else torch.float16 if flags["fp16"] else torch.float32


def dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def compute_identity(device: str | None, precision: str = "auto") -> str:
    """`<device type>:<precision>` as they resolve on this machine (e.g. `cpu:fp32`, `cuda:bf16`): part of every
    freshness and checkpoint key of a stage that runs a model."""
    resolved = resolve_device(device)
    flags = precision_flags(precision, resolved)
    kind = resolved.split(":")[0]
    return f"{kind}:{'bf16' if flags['bf16'] else 'fp16' if flags['fp16'] else 'fp32'}"
