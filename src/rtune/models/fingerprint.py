"""Model identity for the embedding cache, aware of adapters and GGUF files."""

from __future__ import annotations

from pathlib import Path


def encoder_fingerprint(model_id: str, memo_dir: Path | None = None) -> str:
    """The cache's weight fingerprint of `model_id`; an adapter folder's includes its base's, and a GGUF
    file is identified by its content."""
    from rtune.index.embedding_cache import _file_sha256, model_fingerprint
    from rtune.models.adapter import adapter_base, is_adapter_folder
    from rtune.models.gguf import split_gguf

    if split_gguf(model_id):
        return "gguf-sha256:" + _file_sha256(Path(model_id), memo_dir)
    own = model_fingerprint(model_id, memo_dir)
    if Path(model_id).is_dir() and is_adapter_folder(model_id):
        return f"{own}+base:{encoder_fingerprint(adapter_base(model_id), memo_dir)}"
    return own
