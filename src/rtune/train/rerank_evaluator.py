"""Dev evaluation of a cross-encoder in training: rerank a first stage's top-k for the dev queries and score
the reranked run over the whole corpus's qrels, with the same code as `rtune eval --rerank`.

(sentence-transformers' CrossEncoderRerankingEvaluator scores only the candidate lists it is given, so a
positive the first stage missed does not count against it; here it does, and the figures equal those of
`rtune eval --rerank` on the saved model.)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sentence_transformers.base.evaluation import BaseEvaluator

from rtune.data.records import Qrels, Run
from rtune.eval.metrics import compute_metrics
from rtune.index.rerank import rerank_run

log = logging.getLogger(__name__)


class LiveCrossEncoder:
    """The Reranker protocol over a CrossEncoder object (the model being trained): raw logits, no sigmoid."""

    name = "cross-encoder in training"

    def __init__(self, model, batch_size: int = 64) -> None:
        import torch

        self.model, self.batch_size = model, batch_size
        self._identity = torch.nn.Identity()

    def settings(self) -> dict:
        return {"kind": "cross_encoder", "max_length": self.model.max_seq_length}

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        if not pairs:
            return []
        scores = self.model.predict([list(p) for p in pairs], batch_size=self.batch_size, activation_fn=self._identity,
                                    show_progress_bar=False, convert_to_numpy=True)  # (n,)
        return [float(s) for s in scores]


def as_reranker(model, batch_size: int):
    """`model` as a Reranker: one already (a `score(pairs)` object such as the LLM reranker in training) as it is,
    a CrossEncoder through LiveCrossEncoder."""
    from sentence_transformers import CrossEncoder

    if not isinstance(model, CrossEncoder) and callable(getattr(model, "score", None)):
        return model
    return LiveCrossEncoder(model, batch_size)


class RerankDevEvaluator(BaseEvaluator):
    """Reranks `run` (the first stage's dev run) with the model (a CrossEncoder in training, or any Reranker)
    and returns `dev_<metric>` for every metric."""

    def __init__(self, run: Run, queries: Mapping[str, str], texts: Mapping[str, str], qrels: Qrels,
                 metric_names: list[str], primary: str, top_k: int, batch_size: int = 64, name: str = "dev") -> None:
        super().__init__()
        self.run, self.queries, self.texts, self.qrels = run, dict(queries), dict(texts), qrels
        self.metric_names, self.top_k, self.batch_size, self.name = metric_names, top_k, batch_size, name
        self.primary_metric = primary
        self.greater_is_better = True
        self.history: list[dict] = []

    def __call__(self, model, output_path=None, epoch: float = -1, steps: int = -1) -> dict[str, float]:
        reranked = rerank_run(self.run, self.queries, self.texts, as_reranker(model, self.batch_size), self.top_k,
                              batch_size=self.batch_size, show_progress=False)
        means, _ = compute_metrics(self.qrels, reranked, self.metric_names)
        self.history.append({"epoch": epoch, "steps": steps, **means})
        log.info("dev, reranked top %d (epoch %s, step %s): %s", self.top_k, epoch, steps,
                 ", ".join(f"{k}={v:.4f}" for k, v in means.items()))
        metrics = self.prefix_name_to_metrics(means, self.name)
        if getattr(model, "model_card_data", None) is not None:  # a sentence-transformers model
            self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics
