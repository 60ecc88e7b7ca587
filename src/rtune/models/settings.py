"""Encoder settings: how texts are presented to an embedder, saved with a trained model.

One object decides, for train, mine, eval, score and the Retriever alike: the query prompt or instruction +
format, in-context examples, the document prompt, the maximum query and passage lengths, the document text
rule, and how the model is loaded (pooling, EOS appended, padding side, torch dtype). Training
saves it as `rtune_encoder.json` beside the weights, so loading the model later needs no flags; an option
given explicitly overrides the saved value.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from rtune.data.atomic import atomic_file
from rtune.errors import InputError, check_choice
from rtune.models.icl import check_examples, icl_prefix

SETTINGS_FILE = "rtune_encoder.json"
POOLINGS = ("cls", "mean", "last_token")
PADDING_SIDES = ("left", "right")
TORCH_DTYPES = ("auto", "float32", "float16", "bfloat16")
# Loading settings added for decoder-only models: unset (None) means "the model's own" and is not written,
# so settings files and cache keys of models that do not use them stay as they were.
LOADING_FIELDS = ("pooling", "append_eos", "padding_side", "torch_dtype")


@dataclass(frozen=True)
class EncoderSettings:
    """`query_instruction` + `query_format` (FlagEmbedding style, e.g. "<instruct>{}\\n<query>{}") rewrite the
    query text; `query_prompt` / `document_prompt` are prefixes; lengths are in tokens (None: the model's
    own maximum); `use_title`: document text = title + text (see rtune.data.text).

    Decoder-only models: `pooling` (None: the model's own; a plain causal-LM folder or GGUF file gets
    last_token), `append_eos` (None: on with last_token pooling), `padding_side` (None: left with last_token
    pooling), `torch_dtype` (None: float32). `icl_examples`: {query, response} pairs put before every query
    as bge-en-icl blocks (see rtune.models.icl)."""
    query_prompt: str | None = None
    document_prompt: str | None = None
    query_instruction: str | None = None
    query_format: str = "{}{}"
    max_query_length: int | None = None
    max_passage_length: int | None = None
    use_title: bool = True
    pooling: str | None = None
    append_eos: bool | None = None
    padding_side: str | None = None
    icl_examples: tuple[dict[str, str], ...] | None = None
    torch_dtype: str | None = None

    def __post_init__(self) -> None:
        if self.query_format.count("{}") != 2:
            raise InputError(f"--query-format '{self.query_format}' needs two '{{}}' slots: instruction, then query")
        for name, valid in (("pooling", POOLINGS), ("padding_side", PADDING_SIDES), ("torch_dtype", TORCH_DTYPES)):
            if getattr(self, name) is not None:
                check_choice(f"--{name.replace('_', '-')}", getattr(self, name), valid)
        if self.icl_examples is not None:
            object.__setattr__(self, "icl_examples", check_examples(self.icl_examples, "--icl-examples") or None)

    def format_query(self, text: str) -> str:
        """The query with the instruction put into the format, after the in-context examples (the prompt
        prefix is added by the encoder)."""
        query = self.query_format.format(self.query_instruction, text) if self.query_instruction else text
        return icl_prefix(self.icl_examples, self.query_instruction) + query if self.icl_examples else query

    def override(self, **values: Any) -> EncoderSettings:
        """A copy with every value that is not None replacing the current one."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        """Every setting; the decoder-only ones (loading fields, ICL examples) only when set."""
        values = asdict(self)
        values["icl_examples"] = [dict(e) for e in self.icl_examples] if self.icl_examples else None
        return {k: v for k, v in values.items() if v is not None or k not in (*LOADING_FIELDS, "icl_examples")}

    def loading_identity(self) -> dict[str, Any]:
        """The loading settings that are set: they change the embeddings, so they key the embedding cache."""
        return {k: getattr(self, k) for k in LOADING_FIELDS if getattr(self, k) is not None}

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / SETTINGS_FILE
        with atomic_file(path) as handle:
            handle.write(json.dumps(self.as_dict(), indent=2) + "\n")
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
