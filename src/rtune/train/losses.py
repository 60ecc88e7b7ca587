"""Loss registry of `rtune train`, by the names users type: contrastive (mnrl, cached_mnrl) and
distillation (kl, margin_mse, mean_margin; see rtune.train.distill_losses).

`--scale` is the inverse student temperature of every loss that turns similarities into logits (mnrl,
cached_mnrl, kl, margin_mse), so a student's logits span the same range whichever loss trains it.
`mean_margin` works on the plain similarity (cosine for normalised models) and its `--margin` is in
those units.
"""

from __future__ import annotations

from collections.abc import Callable

from rtune.train.distributed import distributed


def _mnrl(model, config):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss(model, scale=config.scale, gather_across_devices=distributed())


def _cached_mnrl(model, config):
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

    return CachedMultipleNegativesRankingLoss(model, scale=config.scale, mini_batch_size=config.mini_batch_size,
                                              gather_across_devices=distributed())


def _kl(model, config):
    from rtune.train.distill_losses import build_distill_loss

    return build_distill_loss("kl", model, teacher_temperature=config.teacher_temperature, scale=config.scale,
                              contrastive_weight=config.contrastive_weight, teacher_scores=config.teacher_scores)


def _margin_mse(model, config):
    from rtune.train.distill_losses import build_distill_loss

    return build_distill_loss("margin_mse", model, scale=config.scale, teacher_scores=config.teacher_scores)


def _mean_margin(model, config):
    from rtune.train.distill_losses import build_distill_loss

    return build_distill_loss("mean_margin", model, margin=config.margin)


LOSSES: dict[str, Callable] = {"mnrl": _mnrl, "cached_mnrl": _cached_mnrl, "kl": _kl, "margin_mse": _margin_mse,
                               "mean_margin": _mean_margin}
# the distillation options and the losses that read them (one given for another loss is an error)
DISTILL_OPTIONS: dict[str, tuple[str, ...]] = {
    "teacher_temperature": ("kl",), "contrastive_weight": ("kl",), "teacher_scores": ("kl", "margin_mse"),
    "margin": ("mean_margin",),
}
GROUP_LOSSES = ("kl", "margin_mse", "mean_margin")  # losses over each row's own group: they need negatives


def needs_teacher_scores(loss: str) -> bool:
    """Whether `loss` reads teacher scores (a `label` column from the groups' pos_scores / neg_scores)."""
    from rtune.train.distill_losses import NEEDS_TEACHER_SCORES

    return NEEDS_TEACHER_SCORES.get(loss, False)


def uses_in_batch_negatives(config) -> bool:
    """Whether the loss treats the other rows of a batch as negatives (then batches must hold no disguised
    positive): the contrastive losses, and kl with a contrastive term. The rest see only their own row."""
    return config.loss in ("mnrl", "cached_mnrl") or (config.loss == "kl" and config.contrastive_weight > 0)


def build_loss(model, config):
    return LOSSES[config.loss](model, config)
