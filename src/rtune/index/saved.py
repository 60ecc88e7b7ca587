"""A saved Retriever: index once, serve many times.

Folder layout (written atomically):
- `retriever.json`: format, model (folder or hub id) and its weight fingerprint, encoder settings, index type
  and search parameters, document count and the document text rule;
- `documents.jsonl`: `{"_id", "title", "text"}` in index order;
- `embeddings.npy` (exact search; memory-mapped on load) or `index.faiss` (IVF / HNSW).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rtune import __version__
from rtune.data.atomic import atomic_dir
from rtune.data.jsonl import read_jsonl, require_text, write_jsonl
from rtune.data.records import Document
from rtune.data.text import describe_rule
from rtune.errors import InputError
from rtune.index.dense_index import DenseIndex
from rtune.index.dense_search import INDEX_TYPES, ApproximateIndex, ExactIndex
from rtune.models.fingerprint import model_fingerprint

FORMAT = "rtune-retriever/1"
META, DOCUMENTS, MATRIX, FAISS_INDEX = "retriever.json", "documents.jsonl", "embeddings.npy", "index.faiss"


def save_retriever(retriever, path: Path, overwrite: bool = False) -> Path:
    """Write `retriever`'s model settings, documents and index to the folder `path`."""
    encoder, index = retriever.encoder, retriever.index
    model_id, settings = getattr(encoder, "model_id", None), getattr(encoder, "settings", None)
    if model_id is None or settings is None:
        raise ValueError("only a retriever built from a model folder or hub id (Retriever.from_pretrained) can be saved")
    meta = {"format": FORMAT, "rtune_version": __version__, "model": model_id, "model_fingerprint": model_fingerprint(model_id),
            "encoder_settings": settings.as_dict(), "document_text": describe_rule(settings.use_title),
            "index_type": index.index_type, "seed": retriever.seed, "documents": len(retriever.documents)}
    with atomic_dir(path, overwrite=overwrite) as tmp:
        write_jsonl(tmp / DOCUMENTS, ({"_id": d.id, "title": d.title, "text": d.text} for d in retriever.documents))
        if isinstance(index.searcher, ApproximateIndex):
            index.searcher.save(tmp / FAISS_INDEX)
            meta.update(nprobe=index.searcher.nprobe, ef_search=index.searcher.ef_search)
        else:
            np.save(tmp / MATRIX, np.asarray(index.matrix))
        (tmp / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _read_meta(path: Path) -> dict:
    file = path / META
    if not file.is_file():
        raise InputError(f"not a saved retriever (no {META})", path)
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read: {err}", file) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"unknown format {meta.get('format') if isinstance(meta, dict) else meta!r}; expected {FORMAT}", file)
    if meta.get("index_type") not in INDEX_TYPES:
        raise InputError(f"unknown index type {meta.get('index_type')!r}; valid: {', '.join(INDEX_TYPES)}", file)
    return meta


def _read_documents(file: Path) -> list[Document]:
    docs = []
    for line, obj in read_jsonl(file):
        if "_id" not in obj:
            raise InputError("missing '_id'", file, line)
        docs.append(Document(id=str(obj["_id"]), text=require_text(obj, "text", str(file), line, allow_empty=True),
                             title=str(obj.get("title") or "")))
    return docs


def load_retriever(cls, path: Path, device: str | None = None, **kwargs):
    """A `cls` (Retriever) restored from `path`: same model weights (checked), settings, documents and index."""
    from rtune.models.encoder_options import EncoderOptions

    meta = _read_meta(path)
    documents = _read_documents(path / DOCUMENTS)
    if isinstance(meta.get("model"), str) and Path(meta["model"]).is_dir() and \
            model_fingerprint(meta["model"]) != meta.get("model_fingerprint"):
        raise InputError(f"the model {meta['model']} changed since this index was saved; index the documents again", path / META)
    if meta["index_type"] == "exact":
        matrix = np.load(path / MATRIX, mmap_mode="r")
        searcher = ExactIndex(matrix)
    else:
        matrix = None
        searcher = ApproximateIndex.load(path / FAISS_INDEX, meta["index_type"], meta.get("nprobe", 32), meta.get("ef_search", 256))
    encoder = EncoderOptions(device=device, **meta["encoder_settings"]).build_encoder(meta["model"])
    retriever = cls(encoder, index_type=meta["index_type"], seed=meta.get("seed", 0), **kwargs)
    retriever.index = DenseIndex(encoder, matrix, searcher, None, retriever.batch_size, show_progress=False)
    if retriever.index.size != len(documents):
        raise InputError(f"{len(documents)} documents but an index of {retriever.index.size}", path / DOCUMENTS)
    retriever.documents = documents
    return retriever
