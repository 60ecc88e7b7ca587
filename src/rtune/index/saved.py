"""A saved Retriever: index once, serve many times.

Folder layout (written atomically):
- `retriever.json`: format, model (folder or hub id) and its weight fingerprint, encoder settings, index type
  and search parameters, document count and the document text rule;
- `documents.jsonl`: `{"_id", "title", "text"}` in index order;
- `embeddings.npy` (exact search; memory-mapped on load) or `index.faiss` (IVF / HNSW);
- `bm25/` (hybrid mode, rtune.index.bm25.BM25Index.save): the BM25 index, memory-mapped on load, so nothing is
  tokenised again; `retriever.json` then also holds the hybrid settings and the corpus's BM25 language.
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
from rtune.index.bm25 import BM25Index
from rtune.index.dense_index import DenseIndex
from rtune.index.dense_search import INDEX_TYPES, ApproximateIndex, ExactIndex
from rtune.index.fusion import HybridSettings
from rtune.models.encoder_options import EncoderOptions
from rtune.models.fingerprint import model_fingerprint

FORMAT = "rtune-retriever/1"
META, DOCUMENTS, MATRIX, FAISS_INDEX = "retriever.json", "documents.jsonl", "embeddings.npy", "index.faiss"
BM25_DIR = "bm25"


def save_retriever(retriever, path: Path, overwrite: bool = False) -> Path:
    """Write `retriever`'s model settings, documents and index to the folder `path`."""
    encoder, index = retriever.encoder, retriever.index
    model_id, settings = getattr(encoder, "model_id", None), getattr(encoder, "settings", None)
    if model_id is None or settings is None:
        raise ValueError("only a retriever built from a model folder or hub id (Retriever.from_pretrained) can be saved")
    meta = {"format": FORMAT, "rtune_version": __version__, "model": model_id, "model_fingerprint": model_fingerprint(model_id),
            "encoder_settings": settings.as_dict(), "document_text": describe_rule(settings.use_title),
            "index_type": index.index_type, "seed": retriever.seed, "documents": len(retriever.documents),
            "hybrid": retriever.hybrid.as_dict() if retriever.hybrid is not None else None,
            "corpus_language": retriever._corpus_language}
    bm25 = retriever.bm25_index() if retriever.hybrid is not None else None
    with atomic_dir(path, overwrite=overwrite) as tmp:
        if bm25 is not None:
            bm25.save(tmp / BM25_DIR)
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


def _hybrid_settings(meta: dict, given, file: Path):
    """The hybrid settings to load with: `given` (a HybridSettings), none (`given` False) or the saved ones (None)."""
    if given is False:
        return None
    if given is None:
        saved = meta.get("hybrid")
        if saved is None:
            return None
        if not isinstance(saved, dict):
            raise InputError(f"'hybrid' must be an object or null, got {saved!r}", file)
        return HybridSettings.from_dict(saved, file)
    if not isinstance(given, HybridSettings):
        raise TypeError(f"hybrid must be a HybridSettings, False or None, not {type(given).__name__}")
    return given


def _load_bm25(retriever, folder: Path) -> None:
    """Use the saved BM25 index when it matches the language and documents; else build it again from the saved
    documents (deterministic: the same texts, language and parameters give the same index)."""
    if retriever.hybrid is None:
        return
    if (folder / BM25Index.SETTINGS_FILE).is_file():
        try:
            bm25 = BM25Index.load(folder)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"cannot read the saved BM25 index ({type(err).__name__}: {err})", folder) from None
        if bm25.language == retriever.bm25_language() and bm25.size == len(retriever.documents):
            retriever.bm25 = bm25
    retriever.bm25_index()


def load_retriever(cls, path: Path, device: str | None = None, hybrid=None, **kwargs):
    """A `cls` (Retriever) restored from `path`: same model weights (checked), settings, documents and index.
    `hybrid`: None keeps the saved hybrid settings, False drops them, a HybridSettings replaces them."""
    meta = _read_meta(path)
    settings = _hybrid_settings(meta, hybrid, path / META)
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
    retriever = cls(encoder, index_type=meta["index_type"], seed=meta.get("seed", 0), hybrid=settings, **kwargs)
    retriever._corpus_language = meta.get("corpus_language") or "en"
    retriever.index = DenseIndex(encoder, matrix, searcher, None, retriever.batch_size, show_progress=False)
    if retriever.index.size != len(documents):
        raise InputError(f"{len(documents)} documents but an index of {retriever.index.size}", path / DOCUMENTS)
    retriever.documents = documents
    _load_bm25(retriever, path / BM25_DIR)
    return retriever
