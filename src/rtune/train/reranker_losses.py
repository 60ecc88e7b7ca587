"""Loss registry of `rtune train-reranker`: sentence-transformers' own cross-encoder losses, by the names users type.

- `mnrl` (default): MultipleNegativesRankingLoss, softmax cross-entropy of the positive against its hard
  negatives plus `in_batch_negatives` other rows' passages, on the raw logits (activation none, scale 1), the
  group objective FlagEmbedding trains its rerankers with. On a MiniLM base with a new head it is the loss that
  learns within a CPU budget: measured on SQuAD BM25 groups (benchmarks/stage3_4.py), `bce` stayed at its
  starting loss for 75 steps while this one fell from ln 4 to ~0.45 in 125.
- `bce`: BinaryCrossEntropyLoss on (query, passage) pairs, label 1 for the positive and 0 for each negative,
  with `pos_weight` = negatives per positive, so that both classes weigh the same (as sentence-transformers'
  MS MARCO BCE example does). It needs many more steps than a listwise loss.
- `lambda`: LambdaLoss over each group (the positive and its negatives), NDCGLoss2++ weighting. Chosen over
  ListNetLoss because it optimises an nDCG bound (the metric we select and report), because it reads binary
  labels as gains 2^label - 1, while ListNet's softmax over labels [1, 0, 0, 0] leaves a soft target that
  puts a quarter of the mass on the negatives, and because the library's authors find it the stronger of the two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from rtune.errors import check_choice

Layout = Literal["pairs", "lists", "tuples"]


def _mnrl(model, negatives: int, in_batch_negatives: int):
    from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss(model, num_negatives=in_batch_negatives, scale=1.0, activation_fn=None)


def _bce(model, negatives: int, in_batch_negatives: int):
    import torch
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    return BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(max(1, negatives))))


def _lambda(model, negatives: int, in_batch_negatives: int):
    from sentence_transformers.cross_encoder.losses import LambdaLoss

    return LambdaLoss(model)


RERANKER_LOSSES: dict[str, Callable] = {"mnrl": _mnrl, "bce": _bce, "lambda": _lambda}
# pairs: (query, passage, label); lists: (query, [passages], [labels]); tuples: (query, positive, negative_1, ...)
LAYOUTS: dict[str, Layout] = {"mnrl": "tuples", "bce": "pairs", "lambda": "lists"}
IN_BATCH = {"mnrl"}  # losses that score other rows' passages too: batches must be free of known positives


def build_reranker_loss(name: str, model, negatives: int, in_batch_negatives: int = 1):
    """The `name` loss for a one-logit CrossEncoder trained with `negatives` hard negatives per positive."""
    return RERANKER_LOSSES[check_choice("loss", name, RERANKER_LOSSES)](model, negatives, in_batch_negatives)
