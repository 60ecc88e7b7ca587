"""An LLM reranker: the logit of the "Yes" token after a prompt (bge-reranker-v2-gemma style).

Each pair becomes `[bos] A: {query} {sep} B: {passage} {sep} {prompt}`, as FlagEmbedding's
`FlagLLMReranker` builds it: query cut to 3/4 of `max_length`, the passage cut to what is left, the
separator and prompt always kept. Batches are left-padded so the last position is every row's real last
token, with position ids counted from each row's first real token.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel, Field

from rtune.models.adapter import fold_adapter
from rtune.models.causal_lm import load_causal_lm
from rtune.models.finite import require_finite_weights
from rtune.models.precision import dtype_name, inference_dtype, resolve_device
from rtune.models.yes_token import YES_WORD, yes_token_id

log = logging.getLogger(__name__)

DEFAULT_PROMPT = ("Given a query A and a passage B, determine whether the passage contains an answer to the query "
                  "by providing a prediction of either 'Yes' or 'No'.")


RERANKER_SETTINGS = "rtune_reranker.json"  # the prompt settings an LLM reranker was trained with, saved beside it
PROMPT_DEFAULTS = {"max_length": 512, "query_prefix": "A: ", "passage_prefix": "B: ", "separator": "\n",
                   "prompt": DEFAULT_PROMPT, "yes_word": YES_WORD}


def saved_prompt_settings(model_name: str) -> dict:
    """The prompt settings saved with an LLM reranker folder (`rtune_reranker.json`), or {} (none, or unreadable)."""
    import json

    path = Path(model_name).expanduser() / RERANKER_SETTINGS
    try:
        saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in saved.items() if k in PROMPT_DEFAULTS} if isinstance(saved, dict) else {}


class LLMPromptOptions(BaseModel):
    """How an LLM reranker reads a pair, shared by `rtune score` and `rtune train-llm-reranker`: what training
    reads is what scoring reads. Unset: the reranker's saved value (rtune_reranker.json), else PROMPT_DEFAULTS."""

    query_prefix: str | None = Field(None, description="llm: text before the query [default: the reranker's saved one, else 'A: ']")
    passage_prefix: str | None = Field(None, description="llm: text before the passage [default: saved, else 'B: ']")
    separator: str | None = Field(None, description="llm: text between query and passage and before the prompt (YAML for a "
                                  "newline) [default: saved, else a newline]")
    prompt: str | None = Field(None, description="llm: instruction placed after the pair [default: saved, else "
                               f"{DEFAULT_PROMPT!r}]")
    yes_word: str | None = Field(None, description="llm: the word whose token logit is the score (must be one token) "
                                 "[default: saved, else Yes]")


class LLMReranker:
    """Scores pairs with `logits[last position, id("Yes")]` of a causal LM."""

    def __init__(self, model_name: str, device: str | None = None, precision: str = "auto", max_length: int | None = None,
                 query_prefix: str | None = None, passage_prefix: str | None = None, separator: str | None = None,
                 prompt: str | None = None, yes_word: str | None = None, gguf_file: str | None = None,
                 batch_size: int = 16) -> None:
        """Prompt settings and max_length left None take the reranker's saved ones (`rtune_reranker.json`, written
        by `rtune train-llm-reranker` and kept by `rtune merge`), else PROMPT_DEFAULTS."""
        saved = saved_prompt_settings(model_name)
        given = {"max_length": max_length, "query_prefix": query_prefix, "passage_prefix": passage_prefix,
                 "separator": separator, "prompt": prompt, "yes_word": yes_word}
        chosen = {k: v if v is not None else saved.get(k, PROMPT_DEFAULTS[k]) for k, v in given.items()}
        max_length, query_prefix, passage_prefix = chosen["max_length"], chosen["query_prefix"], chosen["passage_prefix"]
        separator, prompt, yes_word = chosen["separator"], chosen["prompt"], chosen["yes_word"]
        if max_length < 8:
            raise ValueError(f"max_length must be at least 8 tokens, got {max_length}")
        self.name = model_name if not gguf_file else f"{model_name}/{gguf_file}"
        self.device = resolve_device(device)
        self.dtype = inference_dtype(precision, self.device)
        self.max_length, self.batch_size = max_length, batch_size
        self.query_prefix, self.passage_prefix, self.separator, self.prompt = query_prefix, passage_prefix, separator, prompt
        self.yes_word, self.gguf_file = yes_word, gguf_file
        self.tokenizer, model = load_causal_lm(model_name, self.dtype, self.device, gguf_file)
        # an adapter is folded into the weights, as `rtune merge` does: scoring then costs what a full model costs
        self.model = fold_adapter(model).eval()
        require_finite_weights(self.model, "the LLM reranker", model_name)
        self.yes_id = yes_token_id(self.tokenizer, yes_word, self.name)  # fails before any scoring
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        bos = self.tokenizer.bos_token_id
        self.bos = [bos] if bos is not None and bos != self.pad_id else []
        self.sep_ids = self._ids(separator)
        self.tail_ids = self.sep_ids + self._ids(prompt)
        # prompt settings given explicitly that differ from those it was trained with
        differ = [k for k in ("query_prefix", "passage_prefix", "separator", "prompt", "yes_word") if k in saved and saved[k] != chosen[k]]
        if differ:
            log.warning("%s was trained with different %s (see %s); scores read with other settings may mean little", model_name,
                        ", ".join(differ), Path(model_name).expanduser() / RERANKER_SETTINGS)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def settings(self) -> dict:
        return {"kind": "llm", "model": self.name, "max_length": self.max_length, "query_prefix": self.query_prefix,
                "passage_prefix": self.passage_prefix, "separator": self.separator, "prompt": self.prompt,
                "yes_word": self.yes_word, "yes_token_id": self.yes_id, "gguf_file": self.gguf_file,
                "dtype": dtype_name(self.dtype)}

    def input_ids(self, query: str, passage: str) -> list[int]:
        """Token ids of one pair, prompt included (what the last position reads)."""
        query_ids = self._ids(self.query_prefix + query)[: self.max_length * 3 // 4]
        room = max(0, self.max_length - len(self.bos) - len(query_ids) - len(self.sep_ids))
        passage_ids = self._ids(self.passage_prefix + passage)[:room]
        return self.bos + query_ids + self.sep_ids + passage_ids + self.tail_ids

    def _batch(self, rows: list[list[int]]):
        """Left-padded (input_ids, attention_mask, position_ids), each (batch, longest)."""
        import torch

        longest = max(len(r) for r in rows)
        ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, longest - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, longest - len(row):] = 1
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (batch, longest): 0 at each row's first real token
        return ids.to(self.device), mask.to(self.device), positions.to(self.device)

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        import torch

        scores: list[float] = []
        rows = [self.input_ids(q, p) for q, p in pairs]
        with torch.inference_mode():
            for start in range(0, len(rows), self.batch_size):
                ids, mask, positions = self._batch(rows[start:start + self.batch_size])
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                    logits_to_keep=1).logits  # (batch, 1, vocab)
                scores.extend(logits[:, -1, self.yes_id].float().cpu().tolist())  # (batch,)
        return scores
