"""Loss registry: the contrastive losses sentence-transformers provides, by the names users type."""

from __future__ import annotations

from collections.abc import Callable


def _mnrl(model, config):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss(model, scale=config.scale)


def _cached_mnrl(model, config):
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

    return CachedMultipleNegativesRankingLoss(model, scale=config.scale, mini_batch_size=config.mini_batch_size)


LOSSES: dict[str, Callable] = {"mnrl": _mnrl, "cached_mnrl": _cached_mnrl}


def build_loss(model, config):
    return LOSSES[config.loss](model, config)
