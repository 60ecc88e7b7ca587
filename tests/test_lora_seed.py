"""A LoRA training is seeded from its adapter's initialisation on: the same seed gives the same adapter in one process."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from conftest import write_toy_groups
from tiny_rerankers import build_tiny_causal_lm


def _groups(path: Path) -> Path:
    return write_toy_groups(path, negatives=2)


def test_two_lora_trainings_with_one_seed_in_one_process_give_the_same_adapter(tmp_path):
    """The adapter's initial weights come from the global RNG: without a seed right before peft creates them, a
    second training in the same process (after other draws) starts from another adapter and ends elsewhere."""
    from safetensors.torch import load_file

    from rtune.train.bi_encoder import train_bi_encoder
    from rtune.train.config import TrainConfig

    base = build_tiny_causal_lm(tmp_path / "llm")
    groups = _groups(tmp_path / "groups.jsonl")
    adapters = []
    for run in ("first", "second"):
        torch.rand(1000), random.random(), np.random.rand(10)  # other RNG use before each training
        train_bi_encoder(TrainConfig(groups=groups, output=tmp_path / run, model=str(base), batch_size=4, epochs=1,
                                     group_size=2, learning_rate=1e-2, lora_rank=4, lora_target_modules=["q_proj", "v_proj"],
                                     seed=3))
        adapters.append(load_file(tmp_path / run / "adapter_model.safetensors"))
    first, second = adapters
    assert first.keys() == second.keys() and any("lora_A" in k for k in first)
    for key in first:
        assert torch.equal(first[key], second[key]), key
