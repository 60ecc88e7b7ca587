"""BEIR folder reading and writing: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."""

from __future__ import annotations

from pathlib import Path

from rtune.data.atomic import atomic_file
from rtune.data.dataset import RetrievalDataset, check_split_disjoint
from rtune.data.jsonl import Source, not_utf8, open_text, read_jsonl, require_text, source_name, write_jsonl
from rtune.data.records import Document, Qrels, Query
from rtune.errors import InputError

QRELS_HEADER = "query-id\tcorpus-id\tscore"


def read_corpus(source: Source) -> dict[str, Document]:
    """corpus.jsonl -> {id: Document}; duplicate ids and empty texts are errors."""
    name = source_name(source)
    corpus: dict[str, Document] = {}
    for line, obj in read_jsonl(source):
        doc_id = require_text(obj, "_id", name, line)
        text = require_text(obj, "text", name, line)
        title = obj.get("title") or ""
        if doc_id in corpus:
            raise InputError(f"duplicate document id '{doc_id}'", name, line)
        corpus[doc_id] = Document(id=doc_id, text=text, title=str(title))
    if not corpus:
        raise InputError("corpus is empty", name)
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
    source: Source, queries: dict[str, Query] | None = None, corpus: dict[str, Document] | None = None
) -> Qrels:
    """qrels TSV (`query-id corpus-id score`, optional header) -> {qid: {doc_id: score}}.

    Unknown query or document ids, bad scores and queries without a positive are errors.
    """
    name = source_name(source)
    qrels: Qrels = {}
    first_line: dict[str, int] = {}
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
    for qid, judged in qrels.items():
        if not any(rel > 0 for rel in judged.values()):
            raise InputError(f"query '{qid}' has no positive (score > 0)", name, first_line[qid])
    if not qrels:
        raise InputError("qrels file has no judgements", name)
    return qrels


def read_beir(folder: str | Path) -> RetrievalDataset:
    """Read and validate a BEIR folder; every qrels/<split>.tsv found becomes a split."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("dataset folder not found", folder)
    corpus = read_corpus(folder / "corpus.jsonl")
    queries = read_queries(folder / "queries.jsonl")
    qrels_dir = folder / "qrels"
    files = sorted(qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
    if not files:
        raise InputError("no qrels/<split>.tsv files", folder)
    qrels = {path.stem: read_qrels(path, queries, corpus) for path in files}
    check_split_disjoint(qrels, str(qrels_dir))
    return RetrievalDataset(corpus=corpus, queries=queries, qrels=qrels, name=str(folder))


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
