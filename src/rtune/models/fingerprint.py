"""Model identity for the embedding cache and saved indexes, aware of adapters and GGUF files."""

from __future__ import annotations

from pathlib import Path

from rtune.data.identity import content_identity, file_sha256
from rtune.models.adapter import adapter_base, is_adapter_folder
from rtune.models.gguf import split_gguf


def model_fingerprint(name_or_path: str, memo_dir: Path | None = None) -> str:
    """Identity of a model's weights and settings: a local folder's content identity (rtune.data.identity); the id
    itself for hub models."""
    path = Path(name_or_path)
    if not path.is_dir():
        return f"id:{name_or_path}"
    return "sha256:" + content_identity(path, memo_dir)


def encoder_fingerprint(model_id: str, memo_dir: Path | None = None) -> str:
    """The cache's weight fingerprint of `model_id`; an adapter folder's includes its base's, and a GGUF
    file is identified by its content."""
    if split_gguf(model_id):
        return "gguf-sha256:" + file_sha256(Path(model_id), memo_dir)
    own = model_fingerprint(model_id, memo_dir)
    if Path(model_id).is_dir() and is_adapter_folder(model_id):
        return f"{own}+base:{encoder_fingerprint(adapter_base(model_id), memo_dir)}"
    return own
