"""A sentence-transformers CrossEncoder as a Reranker: its raw logit for each pair."""

from __future__ import annotations

from pathlib import Path

from rtune.errors import InputError
from rtune.models.finite import require_finite_weights
from rtune.models.precision import dtype_name, inference_dtype, resolve_device


def load_cross_encoder(name_or_path: str, device: str | None = None, max_length: int | None = None):
    """Load a CrossEncoder (local folder or hub id); one that does not load raises InputError naming it."""
    from sentence_transformers import CrossEncoder

    path = Path(name_or_path).expanduser()
    resolved = str(path) if path.exists() else name_or_path
    if path.is_dir() and not any(path.iterdir()):
        raise InputError("model folder is empty", resolved)
    try:
        model = CrossEncoder(resolved, device=device)
    except Exception as err:  # the loaders raise many types (OSError, ValueError, JSON errors...)
        raise InputError(f"model does not load as a cross-encoder: {type(err).__name__}: {err}", resolved) from err
    require_finite_weights(model, "the cross-encoder", resolved)
    if model.num_labels != 1:
        raise InputError(f"a reranker cross-encoder needs one output score, this one has {model.num_labels} labels", resolved)
    if max_length is not None:
        positions = getattr(model.config, "max_position_embeddings", None) or max_length
        model.max_seq_length = min(max_length, positions)  # never past the position table
    return model


class CrossEncoderReranker:
    """Scores with a CrossEncoder's raw logit (no sigmoid), so distillation temperatures apply to logits.
    `max_length` None keeps the length the model was saved with (a reranker trained at 192 tokens scores at 192)."""

    def __init__(self, model_name: str, device: str | None = None, precision: str = "auto",
                 max_length: int | None = None, batch_size: int = 32) -> None:
        import torch

        self.name = model_name
        self.device = resolve_device(device)
        self.dtype = inference_dtype(precision, self.device)
        self.batch_size = batch_size
        self.model = load_cross_encoder(model_name, self.device, max_length)
        if self.dtype != torch.float32:
            self.model.to(self.dtype)
        self._identity = torch.nn.Identity()

    def settings(self) -> dict:
        return {"kind": "cross_encoder", "model": self.name, "max_length": self.model.max_seq_length,
                "dtype": dtype_name(self.dtype), "activation": "none (raw logit)"}

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        if not pairs:
            return []
        scores = self.model.predict([list(p) for p in pairs], batch_size=self.batch_size, activation_fn=self._identity,
                                    show_progress_bar=False, convert_to_numpy=True)  # (n,) float32
        return [float(s) for s in scores]
