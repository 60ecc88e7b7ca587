"""An LLM reranker as a teacher: the logit of the "Yes" token after a prompt (bge-reranker-v2-gemma style).

Each pair becomes `[bos] A: {query} {sep} B: {passage} {sep} {prompt}`, as FlagEmbedding's
`FlagLLMReranker` builds it: query cut to 3/4 of `max_length`, the passage cut to what is left, the
separator and prompt always kept. Batches are left-padded so the last position is every row's real last
token, with position ids counted from each row's first real token.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from rtune.errors import InputError
from rtune.models.adapter import fold_adapter
from rtune.models.yes_token import YES_WORD, yes_token_id
from rtune.score.dtype import dtype_name, inference_dtype, resolve_device

log = logging.getLogger(__name__)

DEFAULT_PROMPT = ("Given a query A and a passage B, determine whether the passage contains an answer to the query "
                  "by providing a prediction of either 'Yes' or 'No'.")


def load_causal_lm(name_or_path: str, dtype, device: str, gguf_file: str | None = None):
    """(tokenizer, model) for a causal LM folder, hub id, GGUF file, or an LLM-reranker adapter folder
    (`rtune train-llm-reranker`: its base is loaded, then the adapter, as a PeftModel); failures raise
    InputError naming what did not load (for an adapter whose base cannot be found: the adapter folder)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rtune.models.adapter import is_adapter_folder
    from rtune.models.gguf import parsed_once

    path = Path(name_or_path).expanduser()
    if not gguf_file and path.is_dir() and is_adapter_folder(path):
        return _load_with_adapter(path, dtype, device)
    resolved = str(path) if path.exists() else name_or_path
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        with parsed_once() if gguf_file else contextlib.nullcontext():
            tokenizer = AutoTokenizer.from_pretrained(resolved, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(resolved, dtype=dtype, **kwargs)
    except Exception as err:  # the loaders raise many types (OSError, ValueError, JSON errors...)
        raise InputError(f"model does not load as a causal LM: {type(err).__name__}: {err}", resolved) from err
    return tokenizer, model.to(device).eval()


def _load_with_adapter(folder: Path, dtype, device: str):
    """(tokenizer, PeftModel): the adapter's base (a folder, hub id or GGUF file), dequantised, with the adapter on."""
    from rtune.models.adapter import adapter_base, load_adapter
    from rtune.models.gguf import as_dense_model, split_gguf

    if (folder / "modules.json").is_file():
        raise InputError("this adapter belongs to a bi-encoder (`rtune train --lora-rank`), not an LLM reranker; "
                         "score with --teacher bi_encoder", folder)
    base = adapter_base(folder)  # a base that cannot be found fails here, naming the folder
    name, gguf_file = split_gguf(base) or (base, None)
    tokenizer, model = load_causal_lm(name, dtype, device, gguf_file)
    as_dense_model(model)
    if (folder / "tokenizer_config.json").is_file():  # saved with the adapter (its pad token included)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return tokenizer, load_adapter(model, folder).eval()


PROMPT_DEFAULTS = {"max_length": 512, "query_prefix": "A: ", "passage_prefix": "B: ", "separator": "\n",
                   "prompt": DEFAULT_PROMPT, "yes_word": YES_WORD}


def saved_prompt_settings(model_name: str) -> dict:
    """The prompt settings saved with an LLM reranker folder (`rtune_reranker.json`), or {} (none, or unreadable)."""
    import json

    from rtune.models.merge import RERANKER_SETTINGS

    path = Path(model_name).expanduser() / RERANKER_SETTINGS
    try:
        saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in saved.items() if k in PROMPT_DEFAULTS} if isinstance(saved, dict) else {}


class LLMRerankerTeacher:
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
            from rtune.models.merge import RERANKER_SETTINGS

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
