"""Mixed precision where the device supports it."""

from __future__ import annotations

from rtune.errors import InputError


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
