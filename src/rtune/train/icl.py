"""In-context examples drawn from the training groups (`--icl-sample N`), saved with the model."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rtune.models.icl import draw_examples, icl_prefix
from rtune.models.settings import EncoderSettings

log = logging.getLogger(__name__)


def with_icl_sample(settings: EncoderSettings, groups: Sequence, n: int | None, seed: int, tokenizer=None) -> EncoderSettings:
    """`settings` with `n` examples drawn from `groups` (none drawn when `n` is None); warns when the examples
    alone fill most of the query length, since truncation would cut the query itself."""
    if n is not None:
        settings = settings.override(icl_examples=draw_examples(groups, n, seed))
        log.info("in-context examples: %d drawn from the training groups (seed %d)", n, seed)
    if settings.icl_examples and tokenizer is not None and settings.max_query_length:
        prefix = len(tokenizer(icl_prefix(settings.icl_examples, settings.query_instruction), add_special_tokens=False)["input_ids"])
        if prefix > settings.max_query_length // 2:
            log.warning("the in-context examples take %d of the %d query tokens: raise --max-query-length, or queries "
                        "are cut", prefix, settings.max_query_length)
    return settings
