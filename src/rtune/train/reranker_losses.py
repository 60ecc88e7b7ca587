"""Loss registry of `rtune train-reranker`: sentence-transformers' own cross-encoder losses, by the names users type.

- `bce`: BinaryCrossEntropyLoss on (query, passage) pairs, label 1 for the positive and 0 for each negative,
  with `pos_weight` = negatives per positive, so that both classes weigh the same (as sentence-transformers'
  MS MARCO BCE example does).
- `lambda`: LambdaLoss over each group (the positive and its negatives), NDCGLoss2++ weighting. Chosen over
  ListNetLoss because it optimises an nDCG bound (the metric we select and report), because it reads binary
  labels as gains 2^label - 1, while ListNet's softmax over labels [1, 0, 0, 0] leaves a soft target that
  puts a quarter of the mass on the negatives, and because the library's authors find it the stronger of the two.
"""

from __future__ import annotations

from collections.abc import Callable


def _bce(model, negatives: int):
    import torch
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    return BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(max(1, negatives))))


def _lambda(model, negatives: int):
    from sentence_transformers.cross_encoder.losses import LambdaLoss

    return LambdaLoss(model)


RERANKER_LOSSES: dict[str, Callable] = {"bce": _bce, "lambda": _lambda}
PAIRWISE = {"bce": True, "lambda": False}  # rows of (query, passage, label) or of (query, [passages], [labels])


def build_reranker_loss(name: str, model, negatives: int):
    """The `name` loss for a one-logit CrossEncoder trained with `negatives` negatives per positive."""
    from rtune.errors import check_choice

    return RERANKER_LOSSES[check_choice("loss", name, RERANKER_LOSSES)](model, negatives)
