"""The one place that finds the token an LLM reranker scores with (the logit of "Yes")."""

from __future__ import annotations

from rtune.errors import InputError

YES_WORD = "Yes"


def yes_token_id(tokenizer, word: str = YES_WORD, model_name: str = "") -> int:
    """Id of `word` when the tokenizer encodes it as exactly one known token (no special tokens added).

    Used by LLM-reranker scoring and by any later training of such a reranker, so both read the same
    logit. A word split into several tokens, or unknown to the vocabulary, raises InputError naming
    the model: scoring with the first piece or with the unknown token would silently mean something else.
    """
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    where = model_name or getattr(tokenizer, "name_or_path", "") or None
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids) if ids else []
        raise InputError(f"the tokenizer has no single '{word}' token (it encodes '{word}' as {len(ids)} tokens: "
                         f"{pieces}); an LLM reranker scores with the logit of one token", where)
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None and ids[0] == unk:
        raise InputError(f"the tokenizer has no '{word}' token (it maps '{word}' to the unknown token); "
                         "an LLM reranker scores with the logit of one token", where)
    return int(ids[0])
