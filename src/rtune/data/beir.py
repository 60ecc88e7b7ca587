"""BEIR folder reading and writing: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."""

from __future__ import annotations

import logging
from pathlib import Path

from rtune.data.atomic import atomic_file
from rtune.data.dataset import RetrievalDataset, check_split_disjoint
from rtune.data.jsonl import Source, not_utf8, open_text, read_jsonl, require_text, source_name, write_jsonl
from rtune.data.records import Document, Qrels, Query
from rtune.errors import InputError

log = logging.getLogger(__name__)

QRELS_HEADER = "query-id\tcorpus-id\tscore"


def read_corpus(source: Source, dropped: list[str] | None = None) -> dict[str, Document]:
    """corpus.jsonl -> {id: Document}. A record with an empty text but a title is kept (its title is its
    text, see rtune.data.text); one with neither is dropped, logged, and its id appended to `dropped`.
    Bad JSON, a missing `_id` and duplicate ids are errors."""
    name = source_name(source)
    corpus: dict[str, Document] = {}
    empty: list[str] = []
    seen: set[str] = set()
    for line, obj in read_jsonl(source):
        doc_id = require_text(obj, "_id", name, line)
        text = require_text(obj, "text", name, line, allow_empty=True) if obj.get("text") is not None else ""
        title = obj.get("title") or ""
        if not isinstance(title, str):
            raise InputError(f"field 'title' must be a string, got {type(title).__name__}", name, line)
        if doc_id in seen:
            raise InputError(f"duplicate document id '{doc_id}'", name, line)
        seen.add(doc_id)
        if not text.strip() and not title.strip():
            empty.append(doc_id)
            continue
        corpus[doc_id] = Document(id=doc_id, text=text, title=title)
    if empty:
        shown = ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else "")
        log.warning("%s: dropped %d document(s) with neither title nor text: %s", name, len(empty), shown)
        if dropped is not None:
            dropped.extend(empty)
    if not corpus:
        raise InputError("corpus is empty" + (f" (all {len(empty)} records have neither title nor text)" if empty else ""), name)
    return corpus


def read_queries(source: Source) -> dict[str, Query]:
    """queries.jsonl -> {id: Query}; an optional `group` (or metadata.group) keys group splits."""
    name = source_name(source)
    queries: dict[str, Query] = {}
    for line, obj in read_jsonl(source):
        qid = require_text(obj, "_id", name, line)
        text = require_text(obj, "text", name, line)
        group = obj.get("group") or (obj.get("metadata") or {}).get("group") or ""
        if qid in queries:
            raise InputError(f"duplicate query id '{qid}'", name, line)
        queries[qid] = Query(id=qid, text=text, group=str(group))
    if not queries:
        raise InputError("no queries", name)
    return queries


def read_qrels(
    source: Source, queries: dict[str, Query] | None = None, corpus: dict[str, Document] | None = None,
    dropped_docs: set[str] | frozenset[str] = frozenset(), dropped: list[dict] | None = None,
) -> Qrels:
    """qrels TSV (`query-id corpus-id score`, optional header) -> {qid: {doc_id: score}}.

    Unknown query or document ids, bad scores and queries without a positive are errors. A judgement of
    a document in `dropped_docs` (dropped from the corpus for having no text) is skipped, and a query left
    without a positive by that is dropped; both are logged and appended to `dropped`.
    """
    name = source_name(source)
    qrels: Qrels = {}
    first_line: dict[str, int] = {}
    skipped: list[dict] = []
    handle = open_text(source)
    try:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line:
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            if number == 1 and parts[0] in ("query-id", "query_id", "qid"):
                continue
            if len(parts) == 4:  # TREC qrels: qid iteration docid rel
                parts = [parts[0], parts[2], parts[3]]
            if len(parts) != 3:
                raise InputError(f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(parts)}", name, number)
            qid, doc_id, score_text = parts
            try:
                score = int(score_text)
            except ValueError:
                raise InputError(f"score '{score_text}' is not an integer relevance grade", name, number) from None
            if queries is not None and qid not in queries:
                raise InputError(f"unknown query id '{qid}'", name, number)
            if doc_id in dropped_docs:
                skipped.append({"kind": "judgement", "query": qid, "document": doc_id, "score": score, "line": number})
                first_line.setdefault(qid, number)
                continue
            if corpus is not None and doc_id not in corpus:
                raise InputError(f"unknown document id '{doc_id}'", name, number)
            if doc_id in qrels.get(qid, {}):
                raise InputError(f"duplicate judgement for query '{qid}' and document '{doc_id}'", name, number)
            qrels.setdefault(qid, {})[doc_id] = score
            first_line.setdefault(qid, number)
    except UnicodeDecodeError as err:
        raise not_utf8(err, name) from None
    finally:
        if handle is not source:
            handle.close()
    lost_positive = {d["query"] for d in skipped if d["score"] > 0}
    for qid in list(first_line):
        if any(rel > 0 for rel in qrels.get(qid, {}).values()):
            continue
        if qid not in lost_positive:
            raise InputError(f"query '{qid}' has no positive (score > 0)", name, first_line[qid])
        qrels.pop(qid, None)  # every positive it had was an empty document
        skipped.append({"kind": "query", "query": qid, "reason": "its only positives were dropped empty documents"})
    if skipped:
        log.warning("%s: skipped %d judgement(s) of dropped empty documents and %d query(ies) left without a positive",
                    name, sum(d["kind"] == "judgement" for d in skipped), sum(d["kind"] == "query" for d in skipped))
        if dropped is not None:
            dropped.extend({**d, "file": name} for d in skipped)
    if not qrels:
        raise InputError("qrels file has no judgements", name)
    return qrels


UNION_SPLIT = "all"


def _drop_union_split(qrels: dict[str, Qrels], where: Path) -> None:
    """Many BEIR-style folders ship `qrels/all.tsv` beside the splits, holding every judgement: when it is
    exactly the union of the other splits it is dropped (logged); otherwise it is an error."""
    if UNION_SPLIT not in qrels or len(qrels) == 1:
        return
    union: Qrels = {}
    for split, table in qrels.items():
        if split != UNION_SPLIT:
            union.update(table)
    if qrels[UNION_SPLIT] != union:
        extra = sorted(set(qrels[UNION_SPLIT]) ^ set(union))[:5]
        raise InputError(f"qrels/{UNION_SPLIT}.tsv is not the union of the other splits (e.g. queries {extra}); "
                         "remove it or keep it alone", where)
    log.info("%s: qrels/%s.tsv is the union of %s: using the splits", where, UNION_SPLIT,
             ", ".join(s for s in qrels if s != UNION_SPLIT))
    del qrels[UNION_SPLIT]


def read_beir(folder: str | Path) -> RetrievalDataset:
    """Read and validate a BEIR folder; every qrels/<split>.tsv found becomes a split."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("dataset folder not found", folder)
    empty_docs: list[str] = []
    corpus = read_corpus(folder / "corpus.jsonl", dropped=empty_docs)
    queries = read_queries(folder / "queries.jsonl")
    qrels_dir = folder / "qrels"
    files = sorted(qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
    if not files:
        raise InputError("no qrels/<split>.tsv files", folder)
    dropped: list[dict] = [{"kind": "document", "document": d, "reason": "neither title nor text"} for d in empty_docs]
    qrels = {path.stem: read_qrels(path, queries, corpus, set(empty_docs), dropped) for path in files}
    _drop_union_split(qrels, qrels_dir)
    check_split_disjoint(qrels, str(qrels_dir))
    return RetrievalDataset(corpus=corpus, queries=queries, qrels=qrels, name=str(folder), dropped=dropped)


def write_qrels(path: str | Path, qrels: Qrels) -> None:
    """Write qrels as BEIR TSV with its header line, atomically."""
    with atomic_file(path) as handle:
        handle.write(QRELS_HEADER + "\n")
        for qid, judged in qrels.items():
            for doc_id, score in judged.items():
                handle.write(f"{qid}\t{doc_id}\t{score}\n")


def write_beir(folder: str | Path, dataset: RetrievalDataset) -> None:
    """Write corpus, the judged queries and one qrels file per split into an existing folder."""
    folder = Path(folder)
    write_jsonl(folder / "corpus.jsonl", ({"_id": d.id, "title": d.title, "text": d.text} for d in dataset.corpus.values()))
    judged = {qid for table in dataset.qrels.values() for qid in table}
    write_jsonl(
        folder / "queries.jsonl",
        ({"_id": q.id, "text": q.text, **({"group": q.group} if q.group else {})} for q in dataset.queries.values() if q.id in judged),
    )
    for split, table in dataset.qrels.items():
        write_qrels(folder / "qrels" / f"{split}.tsv", table)
