"""How texts are presented to an embedder: query prompt or instruction + format, document prompt."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PromptSettings:
    """`query_instruction` + `query_format` (FlagEmbedding style, e.g. "<instruct>{}\\n<query>{}") rewrite the
    query text; `query_prompt` / `document_prompt` are prefixes applied by sentence-transformers."""

    query_prompt: str | None = None
    document_prompt: str | None = None
    query_instruction: str | None = None
    query_format: str = "{}{}"

    def __post_init__(self) -> None:
        if self.query_format.count("{}") != 2:
            raise ValueError(f"query format '{self.query_format}' needs two '{{}}' slots: instruction, then query")

    def format_query(self, text: str) -> str:
        return self.query_format.format(self.query_instruction, text) if self.query_instruction else text

    def as_dict(self) -> dict:
        return asdict(self)
