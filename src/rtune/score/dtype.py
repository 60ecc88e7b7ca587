"""Device and floating-point type for inference: bf16/fp16 where the device has them, fp32 on CPU."""

from __future__ import annotations

from typing import Literal

Precision = Literal["auto", "fp32", "fp16", "bf16"]


def resolve_device(device: str | None) -> str:
    """`device`, or cuda when one is visible, else cpu."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def inference_dtype(precision: str, device: str):
    """`auto`: bf16 on CUDA that has it, fp16 on other CUDA, fp32 elsewhere. Explicit fp16 needs CUDA."""
    import torch

    from rtune.train.precision import precision_flags

    flags = precision_flags(precision, device)
    return torch.bfloat16 if flags["bf16"] else torch.float16 if flags["fp16"] else torch.float32


def dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")
