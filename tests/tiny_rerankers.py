"""Builders of tiny random rerankers for tests: a BERT cross-encoder and a Llama-style causal LM."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import TOY_DOCS, TOY_QUERIES

TOY_TEXTS = [*TOY_DOCS.values(), *(q for q, _, _ in TOY_QUERIES.values())]


def build_tiny_cross_encoder(folder: Path, seed: int = 0) -> Path:
    """BertForSequenceClassification (num_labels=1) with a word-level vocabulary of the toy texts."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = sorted({w for t in TOY_TEXTS for w in re.findall(r"\w+", t.lower())})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)  # v5: `vocab`, not vocab_file
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_causal_lm(folder: Path, with_yes: bool = True, seed: int = 0, extra_texts: tuple[str, ...] = ()) -> Path:
    """A 2-layer LlamaForCausalLM with a case-sensitive word-level tokenizer (bos/eos/pad, a "\\n" token).
    Its vocabulary holds every toy word, the default LLM-reranker prompt and, when `with_yes`, "Yes"."""
    import torch
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from rtune.models.rerankers.llm import DEFAULT_PROMPT

    splitter = pre_tokenizers.Whitespace()
    texts = [*TOY_TEXTS, DEFAULT_PROMPT, "A: B: No", *extra_texts]
    words = sorted({piece for t in texts for piece, _ in splitter.pre_tokenize_str(t)} - {"Yes"})
    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    vocab = {w: i for i, w in enumerate([*specials, *words, *(["Yes"] if with_yes else [])])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = splitter
    tok.add_special_tokens([AddedToken(s, special=True) for s in specials])
    tok.add_tokens([AddedToken("\n", normalized=False)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                        unk_token="<unk>")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    folder.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class TableReranker:
    """Scores from a {passage: score} table; counts the pairs it was asked about."""

    name = "table"

    def __init__(self, table: dict[str, float]) -> None:
        self.table, self.pairs = table, []

    def settings(self) -> dict:
        return {}

    def score(self, pairs):
        self.pairs.extend(pairs)
        return [self.table.get(p, 0.0) for _, p in pairs]
