"""Distillation losses for the bi-encoder, by the names users type: `kl`, `margin_mse`, `mean_margin`.

Rows (sentence-transformers trainer): text columns `anchor, positive, negative_1, ..., negative_k` and,
for `kl` and `margin_mse`, a `label` column holding one list per row of k + 1 teacher scores in column
order: `[T(q, positive), T(q, negative_1), ..., T(q, negative_k)]` (the trainer's collator stacks them into
a (batch, k + 1) float tensor). `mean_margin` reads no teacher scores (a label column is ignored).

Teacher-score scale. Every loss reads teacher scores as LOGITS (unbounded, higher = more relevant), which
is what `rtune score` writes for all its teachers (a cross-encoder's raw logit, never its sigmoid; an LLM
reranker's "Yes" logit; a bi-encoder's similarity). `teacher_temperature` divides those raw logits before
the teacher softmax. Scores that are probabilities in [0, 1] (a sigmoid-normalised reranker, files from
other tools) must be declared with `teacher_scores="probabilities"`: they are mapped back to logits with
log(p / (1 - p)), clamped at 1e-6, so that one temperature means the same thing for every teacher. We keep
logits rather than standardising each group because a group's spread is information (a teacher sure of
its ranking should push harder than an undecided one) and because MarginMSE regresses absolute margins.

Student scores are the model's own similarity (cosine for normalised models) times `scale`, the inverse
student temperature (20 = the contrastive loss's default), so the student's logits span the same range as
in `mnrl`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from sentence_transformers.sentence_transformer.losses import (
    DistillKLDivLoss,
    MarginMSELoss,
    MultipleNegativesRankingLoss,
)
from sentence_transformers.util import pairwise_cos_sim
from torch import Tensor, nn

from rtune.errors import check_choice

TEACHER_SCALES = ("logits", "probabilities")
_EPS = 1e-6


def teacher_logits(labels: Tensor, teacher_scores: str = "logits") -> Tensor:
    """(batch, n) teacher scores as logits: unchanged for `logits`, log(p / (1 - p)) for `probabilities`."""
    check_choice("teacher score scale", teacher_scores, TEACHER_SCALES)
    labels = labels.detach().float()
    if teacher_scores == "logits":
        return labels
    if bool(((labels < 0) | (labels > 1)).any()):
        raise ValueError("teacher_scores='probabilities' but some teacher scores lie outside [0, 1]; "
                         "pass teacher_scores='logits' for raw scores")
    p = labels.clamp(_EPS, 1 - _EPS)
    return torch.log(p) - torch.log1p(-p)  # (batch, n)


class ScaledSimilarity:
    """Pairwise student similarity times `scale` (the inverse student temperature)."""

    def __init__(self, base: Callable[[Tensor, Tensor], Tensor], scale: float) -> None:
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.base, self.scale = base, scale

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:  # (batch, dim) x (batch, dim) -> (batch,)
        return self.scale * self.base(a, b)

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "similarity": getattr(self.base, "__name__", type(self.base).__name__)}


def _student_similarity(model) -> Callable[[Tensor, Tensor], Tensor]:
    """The model's own pairwise similarity (cosine or dot as it declares); cosine without a model."""
    return getattr(model, "similarity_pairwise", None) or pairwise_cos_sim


class ListwiseKLLoss(DistillKLDivLoss):
    """KL(teacher softmax || student softmax) over each row's [positive, negatives], sentence-transformers'
    DistillKLDivLoss with the student temperature folded into `scale` (so no 1/T^2 shrinking of the loss),
    plus `contrastive_weight` x the in-batch contrastive loss (MultipleNegativesRankingLoss) when > 0."""

    def __init__(self, model, teacher_temperature: float = 1.0, scale: float = 20.0, contrastive_weight: float = 0.0,
                 teacher_scores: str = "logits") -> None:
        super().__init__(model, similarity_fct=ScaledSimilarity(_student_similarity(model), scale),
                         temperature=1.0, teacher_temperature=teacher_temperature)
        if contrastive_weight < 0:
            raise ValueError(f"contrastive_weight must be >= 0, got {contrastive_weight}")
        self.teacher_scores = check_choice("teacher score scale", teacher_scores, TEACHER_SCALES)
        self.contrastive_weight = contrastive_weight
        self.contrastive = MultipleNegativesRankingLoss(model, scale=scale) if contrastive_weight > 0 else None

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        """embeddings: (1 + 1 + k) tensors of (batch, dim); labels: (batch, 1 + k) teacher scores."""
        loss = super().compute_loss_from_embeddings(embeddings, teacher_logits(labels, self.teacher_scores))
        if self.contrastive is not None:
            loss = loss + self.contrastive_weight * self.contrastive.compute_loss_from_embeddings(embeddings, labels)
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "teacher_scores": self.teacher_scores,
                "contrastive_weight": self.contrastive_weight}


class MarginMSE(MarginMSELoss):
    """sentence-transformers' MarginMSELoss on `scale` x the student similarity, with teacher scores read as
    logits (see the module notes): MSE between student and teacher margins s(q, pos) - s(q, neg_i)."""

    def __init__(self, model, scale: float = 1.0, teacher_scores: str = "logits") -> None:
        super().__init__(model, similarity_fct=ScaledSimilarity(_student_similarity(model), scale))
        self.teacher_scores = check_choice("teacher score scale", teacher_scores, TEACHER_SCALES)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        """embeddings: (1 + 1 + k) tensors of (batch, dim); labels: (batch, 1 + k) teacher scores."""
        return super().compute_loss_from_embeddings(embeddings, teacher_logits(labels, self.teacher_scores))

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "teacher_scores": self.teacher_scores}


class MeanMarginLoss(nn.Module):
    """Hinge on the positive's score minus the mean of the negatives' scores:
    mean over rows of max(0, margin - (s(q, pos) - mean_i s(q, neg_i))), s = `scale` x the model similarity."""

    def __init__(self, model, margin: float = 0.2, scale: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.margin = margin
        self.similarity_fct = ScaledSimilarity(_student_similarity(model), scale)

    def forward(self, sentence_features, labels: Tensor | None = None) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """embeddings: (1 + 1 + k) tensors of (batch, dim), k >= 1; labels are not used."""
        if len(embeddings) < 3:
            raise ValueError(f"mean_margin needs (anchor, positive, negative_1, ...) columns, got {len(embeddings)}")
        query, positive, negatives = embeddings[0], embeddings[1], embeddings[2:]
        pos = self.similarity_fct(query, positive)  # (batch,)
        neg = torch.stack([self.similarity_fct(query, n) for n in negatives], dim=1)  # (batch, k)
        return torch.relu(self.margin - (pos - neg.mean(dim=1))).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {"margin": self.margin, "similarity_fct": self.similarity_fct.get_config_dict()}


DISTILL_LOSSES: dict[str, type[nn.Module]] = {"kl": ListwiseKLLoss, "margin_mse": MarginMSE, "mean_margin": MeanMarginLoss}
NEEDS_TEACHER_SCORES: dict[str, bool] = {"kl": True, "margin_mse": True, "mean_margin": False}


def build_distill_loss(name: str, model, **params: Any) -> nn.Module:
    """The `name` loss for `model`; `params` must be among the loss's own keyword arguments."""
    cls = DISTILL_LOSSES[check_choice("distillation loss", name, DISTILL_LOSSES)]
    valid = [p for p in inspect.signature(cls).parameters if p != "model"]
    for key in params:
        if key not in valid:
            raise ValueError(f"unknown parameter '{key}' for loss '{name}'; valid: {', '.join(valid)}")
    return cls(model, **params)
