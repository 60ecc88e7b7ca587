"""rtune: turn documents and labelled questions into a fine-tuned domain retriever, in measured stages."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["HybridSettings", "Retriever", "__version__"]


def __getattr__(name: str):
    # Lazy: `import rtune` must not import torch.
    if name == "Retriever":
        from rtune.index.retriever import Retriever

        return Retriever
    if name == "HybridSettings":
        from rtune.index.fusion import HybridSettings

        return HybridSettings
    raise AttributeError(name)
