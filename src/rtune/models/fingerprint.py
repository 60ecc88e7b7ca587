"""Model identity for the embedding cache, aware of adapters and GGUF files."""

from __future__ import annotations

import hashlib
from pathlib import Path


def _file_sha256(path: Path, memo_dir: Path | None) -> str:
    """Full content hash of a file, memoised by (path, size, mtime) so big weights are read once."""
    stat = path.stat()
    memo_key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = memo_dir / "fingerprints" / memo_key if memo_dir is not None else None
    if memo is not None and memo.is_file():
        memoised = memo.read_text().strip()
        if len(memoised) == 64:  # a memo cut short by a kill is recomputed
            return memoised
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    if memo is not None:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            memo.write_text(digest.hexdigest())
        except OSError:  # an unwritable cache only costs the memo
            pass
    return digest.hexdigest()


def model_fingerprint(name_or_path: str, memo_dir: Path | None = None) -> str:
    """Identity of a model's weights and settings: every file's content (model cards aside) for local
    folders; the id itself for hub models."""
    path = Path(name_or_path)
    if not path.is_dir():
        return f"id:{name_or_path}"
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix != ".md" and not p.name.startswith(".")):
        digest.update(f"{item.relative_to(path)}:{_file_sha256(item, memo_dir)}".encode())
    return "sha256:" + digest.hexdigest()



def encoder_fingerprint(model_id: str, memo_dir: Path | None = None) -> str:
    """The cache's weight fingerprint of `model_id`; an adapter folder's includes its base's, and a GGUF
    file is identified by its content."""
    from rtune.models.adapter import adapter_base, is_adapter_folder
    from rtune.models.gguf import split_gguf

    if split_gguf(model_id):
        return "gguf-sha256:" + _file_sha256(Path(model_id), memo_dir)
    own = model_fingerprint(model_id, memo_dir)
    if Path(model_id).is_dir() and is_adapter_folder(model_id):
        return f"{own}+base:{encoder_fingerprint(adapter_base(model_id), memo_dir)}"
    return own
