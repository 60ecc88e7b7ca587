"""One max length for queries (the anchor column) and another for passages, through sentence-transformers' public
collator fields: `router_mapping` names each column's task (query / document) and `max_length` maps a task to its
length. tests/test_train.py pins what this relies on: the two lengths reach the tokenizer, and a model without a
Router trains on the task-stamped features."""

from __future__ import annotations

from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

QUERY_TASK, DOCUMENT_TASK = "query", "document"


def query_passage_collator(preprocess_fn, columns: list[str], query_length: int, passage_length: int,
                           prompts: dict[str, str] | None = None, query_column: str = "anchor") -> SentenceTransformerDataCollator:
    """The collator for training columns `columns` (the label column aside): `query_column` truncated to
    `query_length` tokens, every other text column to `passage_length`."""
    tasks = {c: QUERY_TASK if c == query_column else DOCUMENT_TASK for c in columns if c != "label"}
    return SentenceTransformerDataCollator(preprocess_fn=preprocess_fn, router_mapping=tasks, prompts=prompts,
                                           max_length={QUERY_TASK: query_length, DOCUMENT_TASK: passage_length})
