"""`python -m rtune.train.launch STAGE CONFIG.json RESULT.json`: what each process torchrun starts runs (see
rtune.train.distributed): the stage's training function with the config, the first process writing the summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rtune.train.bi_encoder import train_bi_encoder
from rtune.train.config import TrainConfig
from rtune.train.cross_encoder import train_cross_encoder
from rtune.train.cross_encoder_config import RerankerTrainConfig
from rtune.train.distributed import is_main
from rtune.train.llm_reranker import LLMRerankerTrainConfig, train_llm_reranker

TRAINERS = {"train": (TrainConfig, train_bi_encoder), "train-reranker": (RerankerTrainConfig, train_cross_encoder),
            "train-llm-reranker": (LLMRerankerTrainConfig, train_llm_reranker)}


def main(argv: list[str]) -> None:
    stage, config_file, result_file = argv
    config_cls, run = TRAINERS[stage]
    config = config_cls.model_validate_json(Path(config_file).read_text(encoding="utf-8"))
    result = run(config)
    if is_main():
        Path(result_file).write_text(json.dumps(result, default=str), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
