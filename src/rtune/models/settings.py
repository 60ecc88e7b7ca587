"""Encoder settings: how texts are presented to an embedder, saved with a trained model.

One object decides, for train, mine, eval and the Retriever alike: the query prompt or instruction +
format, the document prompt, the maximum query and passage lengths, and the document text rule. Training
saves it as `rtune_encoder.json` beside the weights, so loading the model later needs no flags; an option
given explicitly overrides the saved value.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from rtune.errors import InputError

SETTINGS_FILE = "rtune_encoder.json"


@dataclass(frozen=True)
class EncoderSettings:
    """`query_instruction` + `query_format` (FlagEmbedding style, e.g. "<instruct>{}\\n<query>{}") rewrite the
    query text; `query_prompt` / `document_prompt` are prefixes; lengths are in tokens (None: the model's
    own maximum); `use_title`: document text = title + text (see rtune.data.text)."""

    query_prompt: str | None = None
    document_prompt: str | None = None
    query_instruction: str | None = None
    query_format: str = "{}{}"
    max_query_length: int | None = None
    max_passage_length: int | None = None
    use_title: bool = True

    def __post_init__(self) -> None:
        if self.query_format.count("{}") != 2:
            raise InputError(f"--query-format '{self.query_format}' needs two '{{}}' slots: instruction, then query")

    def format_query(self, text: str) -> str:
        """The query with the instruction put into the format (the prompt prefix is added by the encoder)."""
        return self.query_format.format(self.query_instruction, text) if self.query_instruction else text

    def query_string(self, text: str) -> str:
        """The exact string the model sees for a query."""
        return (self.query_prompt or "") + self.format_query(text)

    def document_string(self, text: str) -> str:
        """The exact string the model sees for a document text."""
        return (self.document_prompt or "") + text

    def override(self, **values: Any) -> EncoderSettings:
        """A copy with every value that is not None replacing the current one."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / SETTINGS_FILE
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> EncoderSettings | None:
        """The settings saved in a model folder, or None when it has none."""
        path = Path(folder) / SETTINGS_FILE
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"cannot read encoder settings: {err}", path) from None
        known = {f.name for f in fields(cls)}
        if not isinstance(raw, dict) or set(raw) - known:
            raise InputError(f"unknown encoder settings {sorted(set(raw) - known) if isinstance(raw, dict) else raw}; "
                             f"valid: {', '.join(sorted(known))}", path)
        return cls(**raw)

    @classmethod
    def from_model(cls, model) -> EncoderSettings:
        """Defaults for a model without saved settings: its sentence-transformers prompts, if any."""
        prompts = dict(getattr(model, "prompts", None) or {})
        document = next((prompts[k] for k in ("document", "passage", "corpus") if prompts.get(k)), None)
        return cls(query_prompt=prompts.get("query") or None, document_prompt=document)
