"""`rtune run pipeline.yaml`: the declared recipe as one resumable, gated, measured run (see runner.run_pipeline)."""

from __future__ import annotations

__all__ = ["RunConfig", "run_pipeline"]


def __getattr__(name: str):
    # Lazy: importing the package must not import torch.
    if name in __all__:
        from rtune.pipeline import runner

        return getattr(runner, name)
    raise AttributeError(name)
