"""A data collator with one max length for queries (the first column) and another for passages."""

from __future__ import annotations

from dataclasses import dataclass, field

from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator


@dataclass
class QueryPassageCollator(SentenceTransformerDataCollator):
    """Truncates the anchor column to `query_length` tokens and every other column to `passage_length`."""

    query_length: int = 64
    passage_length: int = 256
    query_column: str = "anchor"
    _column: str = field(default="", init=False, repr=False)

    def _get_task_for_column(self, column_name, column_position, router_mapping):  # noqa: D401 (override)
        self._column = column_name  # remembered for _get_max_length_for_task, called right after
        return super()._get_task_for_column(column_name, column_position, router_mapping)

    def _get_max_length_for_task(self, task):
        return self.query_length if self._column == self.query_column else self.passage_length
