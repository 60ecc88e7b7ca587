"""The peer to beat: a plain one-stage sentence-transformers fine-tune, as its documentation shows it.

MultipleNegativesRankingLoss on (question, paragraph) pairs, in-batch negatives only, the no-duplicates
batch sampler the docs recommend for that loss. No rtune code runs here.
"""

from __future__ import annotations

import json
import time


def train_peer(pairs_file: str, base_model: str, output: str, epochs: int, batch_size: int, learning_rate: float,
               warmup_ratio: float, max_seq_length: int, seed: int) -> dict:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    rows = [json.loads(line) for line in open(pairs_file, encoding="utf-8")]
    dataset = Dataset.from_dict({"anchor": [r["anchor"] for r in rows], "positive": [r["positive"] for r in rows]})
    model = SentenceTransformer(base_model)
    eval_length = model.max_seq_length
    model.max_seq_length = max_seq_length  # train at the budget's length, like rtune's --max-passage-length
    args = SentenceTransformerTrainingArguments(
        output_dir=output + ".checkpoints", num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, warmup_steps=warmup_ratio, seed=seed, data_seed=seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no", report_to="none", logging_steps=10,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset,
                                         loss=MultipleNegativesRankingLoss(model))
    started = time.time()
    trainer.train()
    seconds = time.time() - started
    model.max_seq_length = eval_length  # evaluate at the same length as every other system
    model.save(output)
    return {"rows": len(rows), "train_seconds": round(seconds, 2), "rows_per_second": round(len(rows) * epochs / seconds, 3)}
