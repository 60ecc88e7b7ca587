"""QA pairs JSON Lines -> corpus, queries and qrels.

Each line has `question` and either `doc_id` (into a given corpus.jsonl) or `passage` (the text itself).
Optional: `id` (query id; default `q<line>`), `title`, `group` (split key; default the title, else the
passage id, so all questions on one passage stay in one split).
"""

from __future__ import annotations

import hashlib

from rtune.data.dataset import RetrievalDataset
from rtune.data.jsonl import Source, read_jsonl, require_text, source_name
from rtune.data.records import Document, Qrels, Query
from rtune.errors import InputError


def passage_id(text: str) -> str:
    """Stable id for a passage given by its text: a short content hash."""
    return "p" + hashlib.sha1(" ".join(text.split()).encode("utf-8")).hexdigest()[:12]


def read_qa_pairs(source: Source, corpus: dict[str, Document] | None = None) -> RetrievalDataset:
    """Read QA pairs; with `corpus`, lines may point at documents by `doc_id`."""
    name = source_name(source)
    docs: dict[str, Document] = dict(corpus or {})
    queries: dict[str, Query] = {}
    qrels: Qrels = {}
    for line, obj in read_jsonl(source):
        text = require_text(obj, "question", name, line)
        qid = str(obj["id"]) if obj.get("id") not in (None, "") else f"q{line}"
        if qid in queries:
            raise InputError(f"duplicate query id '{qid}'", name, line)
        if "doc_id" in obj:
            if corpus is None:
                raise InputError("line names a 'doc_id' but no corpus was given (--corpus)", name, line)
            doc_id = require_text(obj, "doc_id", name, line)
            if doc_id not in corpus:
                raise InputError(f"unknown document id '{doc_id}'", name, line)
        elif "passage" in obj:
            passage = require_text(obj, "passage", name, line)
            doc_id = passage_id(passage)
            docs.setdefault(doc_id, Document(id=doc_id, text=passage, title=str(obj.get("title") or "")))
        else:
            raise InputError("missing field 'doc_id' or 'passage'", name, line)
        group = str(obj.get("group") or obj.get("title") or doc_id)
        queries[qid] = Query(id=qid, text=text, group=group)
        qrels.setdefault(qid, {})[doc_id] = 1
    if not queries:
        raise InputError("no question lines", name)
    return RetrievalDataset(corpus=docs, queries=queries, qrels={"all": qrels}, name=name)
