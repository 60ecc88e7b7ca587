"""Dev evaluation during training, through the same ranking and metric code as `rtune eval`."""

from __future__ import annotations

import logging

from sentence_transformers.sentence_transformer.evaluation import SentenceEvaluator

from rtune.data.dataset import RetrievalDataset
from rtune.eval.evaluate import evaluate_ranker
from rtune.index.rankers import DenseRanker
from rtune.models.encoder import SentenceTransformerEncoder
from rtune.models.settings import EncoderSettings

log = logging.getLogger(__name__)


class RetrievalDevEvaluator(SentenceEvaluator):
    """Encodes the full corpus with the model being trained and scores the dev queries (ir-measures), with
    the same encoder settings as training and every later stage."""

    def __init__(self, dataset: RetrievalDataset, split: str, metric_names: list[str], primary: str,
                 batch_size: int = 64, name: str = "dev", settings: EncoderSettings | None = None) -> None:
        super().__init__()
        dataset.require_split(split)
        self.dataset, self.split, self.metric_names = dataset, split, metric_names
        self.batch_size, self.name = batch_size, name
        self.settings = settings or EncoderSettings()
        self.primary_metric = primary
        self.history: list[dict] = []

    def __call__(self, model, output_path=None, epoch: float = -1, steps: int = -1) -> dict[str, float]:
        encoder = SentenceTransformerEncoder(model, self.settings)
        ranker = DenseRanker(encoder, list(self.dataset.corpus.values()), batch_size=self.batch_size, show_progress=False,
                             use_title=self.settings.use_title)
        means, _, _ = evaluate_ranker(ranker, self.dataset, self.split, self.metric_names)
        self.history.append({"epoch": epoch, "steps": steps, **means})
        log.info("dev (epoch %s, step %s): %s", epoch, steps, ", ".join(f"{k}={v:.4f}" for k, v in means.items()))
        metrics = self.prefix_name_to_metrics(means, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics
