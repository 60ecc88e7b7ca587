"""Raw SQuAD-format json (SQuAD, XQuAD, viquad) -> corpus, queries and qrels.

Retrieval unit = a paragraph; its id is stable: `<title>_<paragraph index>` (whitespace -> '_').
Questions are keyed by their `id`, grouped by article title for leak-free splits. A question without an answer in
its paragraph (SQuAD 2.0's `is_impossible: true`, an empty or missing `answers` list) has no positive: it is not a
retrieval query, and is set aside as unanswerable (counted; `prepare --unanswerable keep` writes it to
unanswerable.jsonl).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rtune.data.dataset import RetrievalDataset
from rtune.data.jsonl import Source, json_reason, not_utf8, open_text, source_name
from rtune.data.records import Document, Qrels, Query
from rtune.errors import InputError


def paragraph_id(title: str, index: int) -> str:
    """Stable paragraph id from the article title and the paragraph's position."""
    return f"{'_'.join(title.split())}_{index}"


def _field(obj: Any, key: str, where: str, name: str, kind: type | tuple[type, ...] = str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise InputError(f"{where}: missing field '{key}'", name)
    value = obj[key]
    if not isinstance(value, kind):
        raise InputError(f"{where}.{key}: expected {getattr(kind, '__name__', 'string')}, got {type(value).__name__}", name)
    if kind is str and not value.strip():
        raise InputError(f"{where}.{key}: empty text", name)
    return value


def read_squad(source: Source) -> RetrievalDataset:
    """Read raw SQuAD json into a dataset with one unsplit qrels table named 'all'."""
    name = source_name(source)
    handle = open_text(source)
    try:
        raw = json.load(handle)
    except json.JSONDecodeError as err:
        raise InputError(f"malformed JSON ({json_reason(err)})", name, err.lineno) from None
    except UnicodeDecodeError as err:
        raise not_utf8(err, name) from None
    finally:
        if handle is not source:
            handle.close()
    articles = _field(raw, "data", "top level", name, list)
    corpus: dict[str, Document] = {}
    queries: dict[str, Query] = {}
    unanswerable: dict[str, dict] = {}
    qrels: Qrels = {}
    for a, article in enumerate(articles):
        where = f"data[{a}]"
        title = _field(article, "title", where, name)
        for p, paragraph in enumerate(_field(article, "paragraphs", where, name, list)):
            pwhere = f"{where}.paragraphs[{p}]"
            doc_id = paragraph_id(title, p)
            if doc_id in corpus:
                raise InputError(f"{pwhere}: duplicate paragraph id '{doc_id}' (two articles titled '{title}'?)", name)
            corpus[doc_id] = Document(id=doc_id, text=_field(paragraph, "context", pwhere, name), title=title.replace("_", " "))
            for q, qa in enumerate(_field(paragraph, "qas", pwhere, name, list)):
                qwhere = f"{pwhere}.qas[{q}]"
                qid = str(_field(qa, "id", qwhere, name, (str, int)))
                if qid in queries or qid in unanswerable:
                    raise InputError(f"{qwhere}: duplicate question id '{qid}'", name)
                question = _field(qa, "question", qwhere, name)
                if not answerable(qa):
                    unanswerable[qid] = {"kind": "unanswerable", "id": qid, "text": question, "group": title, "paragraph": doc_id}
                    continue
                queries[qid] = Query(id=qid, text=question, group=title)
                qrels[qid] = {doc_id: 1}
    if not corpus:
        raise InputError("no paragraphs found", name)
    if not queries:
        raise InputError("no answerable questions found" + (f" ({len(unanswerable)} questions have no answer)" if unanswerable else ""), name)
    return RetrievalDataset(corpus=corpus, queries=queries, qrels={"all": qrels}, name=str(Path(name)),
                            dropped=list(unanswerable.values()))


def answerable(qa: dict) -> bool:
    """Whether a SQuAD question has an answer in its paragraph (SQuAD 2.0 marks the others `is_impossible`)."""
    return qa.get("is_impossible") is not True and isinstance(qa.get("answers"), list) and bool(qa["answers"])
