"""Stage `eval`: BM25 or a bi-encoder on one split; metrics, per-query values and a TREC run."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from rtune.data.atomic import atomic_dir, ensure_new_output
from rtune.data.beir import read_beir
from rtune.data.dataset import RetrievalDataset
from rtune.data.manifest import write_manifest
from rtune.data.run_file import write_run
from rtune.errors import InputError, check_choice
from rtune.eval.metrics import DEFAULT_KS, DEFAULT_METRICS, compute_metrics, metric_names
from rtune.eval.report import metrics_grid
from rtune.eval.rerank_eval import add_reranked
from rtune.index.bm25 import dataset_language
from rtune.index.collapse import warn_if_collapsed
from rtune.index.dense_search import INDEX_TYPES
from rtune.index.embedding_cache import cache_for
from rtune.index.fusion import FUSION_METHODS, HybridRanker
from rtune.index.rankers import BM25Ranker, DenseRanker, Ranker
from rtune.models.encoder_options import EncoderOptions
from rtune.stage import DATASET, EVAL, MODEL, RERANKER, StageSpec

BM25 = "bm25"


class EvalConfig(EncoderOptions):
    """Everything `rtune eval` needs. `model` is `bm25`, a model folder or a hub id."""
    dataset: Path = Field(description="prepared dataset folder (`rtune prepare` output)")
    model: str = Field(BM25, description="bm25, a model folder or a hub id")
    split: str = Field("test", description="split whose queries are evaluated")
    output: Path | None = Field(None, description="new folder for metrics.json, per_query.json, run.trec and manifest.json "
                                "[default: print only]")
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS), description="metric families")
    ks: list[int] = Field(default_factory=lambda: list(DEFAULT_KS), description="cut-offs, e.g. 1,5,10")
    language: str | None = Field(None, description="BM25 stemmer/stopwords language (ISO code, e.g. en, de, vi) "
                                 "[default: the dataset's, recorded by `rtune prepare --language`, else en]")
    index_type: str = Field("exact", description="dense search: exact, or an approximate FAISS index for big corpora",
                            json_schema_extra={"choices": INDEX_TYPES})
    rerank: str | None = Field(None, description="reranker (cross-encoder or LLM yes-token model) for the first stage's top candidates; "
                               "its metrics are added as reranked.<metric>")
    rerank_top: int = Field(50, ge=1, description="first-stage candidates reranked per query")
    rerank_fusion: str | None = Field(None, description="also fuse the reranker's scores with the first stage's over the "
                                      "reranked candidates: minmax or rrf; its metrics are added as reranked_fused.<metric> "
                                      "[default: no fusion]")
    rerank_weight: float = Field(0.5, ge=0, le=1, description="--rerank-fusion: the reranker's weight (the first stage gets 1 - it)")
    hybrid: str | None = Field(None, description="fuse the dense --model with this lexical ranker (bm25) [default: no fusion]")
    fusion: str = Field("minmax", description="hybrid: rrf (reciprocal rank fusion) or minmax (normalised score sum)")
    dense_weight: float = Field(0.5, ge=0, le=1, description="hybrid: the dense run's weight (the lexical one gets 1 - it)")
    overwrite: bool = Field(False, description="replace an existing --output")

    @field_validator("index_type")
    @classmethod
    def _known_index_type(cls, value: str) -> str:
        return check_choice("index type", value, INDEX_TYPES)

    @model_validator(mode="after")
    def _rerank_options_need_rerank(self):
        given = [n for n in ("rerank_fusion", "rerank_weight") if n in self.model_fields_set]
        if given and not self.rerank:
            raise InputError(f"--{given[0].replace('_', '-')} is read only with --rerank")
        if "rerank_weight" in given and not self.rerank_fusion:
            raise InputError("--rerank-weight is read only with --rerank-fusion")
        return self

    @field_validator("hybrid", "fusion", "rerank_fusion")
    @classmethod
    def _fusion_choices(cls, value: str | None, info) -> str | None:
        valid = [BM25] if info.field_name == "hybrid" else FUSION_METHODS
        return value if value is None else check_choice(f"--{info.field_name}", value, valid)


def build_ranker(config: EvalConfig, dataset: RetrievalDataset) -> Ranker:
    corpus = list(dataset.corpus.values())
    if config.hybrid and config.model != BM25:

        lexical = build_ranker(config.model_copy(update={"model": BM25, "hybrid": None}), dataset)
        dense = build_ranker(config.model_copy(update={"hybrid": None}), dataset)
        return HybridRanker(lexical, dense, config.fusion, config.dense_weight)
    if config.model == BM25:
        return BM25Ranker(corpus, dataset_language(config.language, config.dataset), use_title=config.resolve_settings().use_title)
    encoder = config.build_encoder(config.model)
    return DenseRanker(encoder, corpus, name=config.model, batch_size=config.encode_batch_size,
                       cache=cache_for(config), dtype=config.embedding_dtype, use_title=encoder.settings.use_title,
                       index_type=config.index_type)


def evaluate_ranker(ranker: Ranker, dataset: RetrievalDataset, split: str, names: list[str], depth: int = 0):
    """Rank the split's queries (at least `depth` deep) and score the run: returns (means, per_query, run)."""
    qrels = dataset.require_split(split)
    queries = {qid: q.text for qid, q in dataset.split_queries(split).items()}
    k = max(depth, *(int(n.split("@")[1]) for n in names))
    run = ranker.rank(queries, k)
    warn_if_collapsed(run, ranker.name)
    means, per_query = compute_metrics(qrels, run, names)
    return means, per_query, run


def evaluate(config: EvalConfig, dataset: RetrievalDataset | None = None, ranker: Ranker | None = None) -> dict[str, float]:
    """Run the stage. With `output`, writes metrics.json, per_query.json, run.trec and a manifest. With `rerank`,
    the reranked metrics sit beside the first stage's as `reranked.<metric>` (also per query) and the reranked
    run is `run.reranked.trec`; with `rerank_fusion` too, the fused ones as `reranked_fused.<metric>` and
    `run.reranked_fused.trec`."""
    started = time.time()
    names = metric_names(config.metrics, config.ks)
    if ranker is None and (config.model == BM25 or config.hybrid):  # the manifest records the language BM25 ran in
        config = config.model_copy(update={"language": dataset_language(config.language, config.dataset)})
    if config.output is not None:

        ensure_new_output(config.output, config.overwrite)  # fail before the work, not after
    dataset = dataset or read_beir(config.dataset)
    dataset.require_split(config.split)
    ranker = ranker or build_ranker(config, dataset)
    means, per_query, run = evaluate_ranker(ranker, dataset, config.split, names, config.rerank_top if config.rerank else 0)
    reranked: dict | None = None
    if config.rerank:

        means, per_query, reranked = add_reranked(config, dataset, run, means, per_query, names)
    if config.output is not None:
        with atomic_dir(config.output, overwrite=config.overwrite) as tmp:
            (tmp / "metrics.json").write_text(json.dumps(means, indent=2) + "\n", encoding="utf-8")
            (tmp / "per_query.json").write_text(json.dumps(per_query) + "\n", encoding="utf-8")
            write_run(tmp / "run.trec", run, tag=Path(config.model).name)
            if reranked is not None:
                tag = f"{Path(config.model).name}+{Path(config.rerank).name}"
                for name, written in reranked.items():
                    write_run(tmp / f"run.{name}.trec", written, tag=tag if name == "reranked" else f"{tag}+{config.rerank_fusion}")
            inputs = [config.dataset] + [m for m in (config.model, config.rerank) if m and Path(m).exists()]
            write_manifest(tmp, "eval", config.model_dump(mode="json"), inputs, started, {"metrics": means})
    return means


def summary(config: EvalConfig, means: dict) -> list:
    """The terminal's metric grid after `rtune eval`."""
    lines: list = [metrics_grid(means, title=f"{config.model} on {config.dataset} / {config.split}")]
    if config.output:
        lines.append(f"metrics, per-query values and run.trec written to {config.output}")
    return lines


EVAL_STAGE = StageSpec(
    name="eval", config=EvalConfig, run=evaluate, produces=EVAL,
    help="Evaluate BM25 or a bi-encoder on a split: metrics, per-query values, TREC run.",
    refs={"dataset": DATASET, "model": MODEL, "rerank": RERANKER},
    defaults=lambda settings: {"dataset": DATASET, "model": MODEL},
    compute=lambda config: config.compute_identity() if config.model != BM25 or config.rerank else None,
    panels={
        "Input": ("dataset", "split", "model", "use_title"),
        "BM25": ("language",),
        "Dense": ("index_type", "*encoder"),
        "Metrics": ("metrics", "ks"),
        "Rerank and hybrid": ("rerank", "rerank_top", "rerank_fusion", "rerank_weight", "hybrid", "fusion", "dense_weight"),
        "Output": ("output", "overwrite"),
    },
    summary=summary,
)
