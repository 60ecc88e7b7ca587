"""Non-finite numbers never pass silently: a model whose weights hold NaN or infinity is not saved, evaluated or
served; a training whose loss stops being finite stops, naming the step."""

from __future__ import annotations

from rtune.errors import InputError


class NotFinite(InputError):
    """A model or a training went non-finite (NaN or infinity): usually a learning rate too high for the model,
    or teacher scores out of range; nothing is written."""


def first_non_finite(module) -> str | None:
    """The name of the first parameter or buffer of a torch module holding a NaN or an infinity, else None."""
    import torch

    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def require_finite_weights(module, what: str, where=None) -> None:
    """InputError (NotFinite) naming `what` and the first non-finite tensor of `module`."""
    bad = first_non_finite(module)
    if bad is not None:
        raise NotFinite(f"{what} holds NaN or infinite weights (first in '{bad}'): it is not usable; train it again "
                        "with a lower learning rate, or check the teacher scores it learned from", where)


def require_finite_loss(loss: float, step: int, total: int | None = None, where=None) -> None:
    """NotFinite naming the optimiser step at which the training loss stopped being finite."""
    import math

    if not math.isfinite(loss):
        of = f" of {total}" if total else ""
        raise NotFinite(f"the training loss became {loss} by optimiser step {step}{of}: the model diverged and nothing "
                        "was saved; lower the learning rate, or check the teacher scores (rtune score) and the data", where)
