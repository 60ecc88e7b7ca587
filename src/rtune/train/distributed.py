"""Training on several processes (GPUs, or CPU processes with gloo) through torchrun and the trainer's own DDP.

`processes: N` makes a training stage relaunch itself as `torchrun --nproc-per-node N -m rtune.train.launch ...`
(several nodes: run that command under your scheduler with --nnodes / --rdzv-endpoint; every process then finds
itself distributed and trains its share). Each global batch of `batch_size` rows, as rtune's conflict-free sampler
builds it, is split across the processes (accelerate's split_batches), and in-batch negatives are gathered from all
of them (sentence-transformers' gather_across_devices, which also offsets each process's anchors to its own
positives), so N processes train on the same batches and the same loss as one process at that batch size. Only full
batches split evenly, so a distributed training keeps the full ones (sentence-transformers' drop_last under DDP): an
epoch's short batches, usually its last, are left out. Only the first process writes the model.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rtune.data.atomic import atomic_dir
from rtune.errors import InputError
from rtune.models.precision import resolve_device

LAUNCHED = "RTUNE_LAUNCHED"  # set in the processes torchrun starts, so they train instead of launching again


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def distributed() -> bool:
    """Whether this process is one of several training together (started by torchrun)."""
    return world_size() > 1


def check_processes(processes: int, batch_size: int, device: str | None) -> None:
    """`processes` must fit the devices there are and divide the batch; an InputError naming the field otherwise."""
    if processes <= 1:
        return
    kind = resolve_device(device).split(":")[0]
    if kind == "cuda":
        import torch

        available, what = torch.cuda.device_count(), "CUDA device(s)"
    else:
        available, what = os.cpu_count() or 1, "CPU core(s) (gloo backend)"
    if processes > available:
        raise InputError(f"--processes {processes}: this machine has {available} {what}; use at most {available}")
    if batch_size % processes:
        raise InputError(f"--batch-size {batch_size} does not split into {processes} processes (each takes an equal share "
                         f"of every batch): use a multiple of {processes}")


def launch(stage: str, config, processes: int) -> dict:
    """Run the stage `stage` with `config` on `processes` processes under torchrun and return the summary the first
    process wrote. A failed process fails the launch with its exit status; torchrun stops the others."""
    with tempfile.TemporaryDirectory(prefix="rtune-launch-") as folder:
        config_file, result_file = Path(folder) / "config.json", Path(folder) / "result.json"
        config_file.write_text(config.model_dump_json(exclude_unset=True), encoding="utf-8")  # as given: validators re-run
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                   "-m", "rtune.train.launch", stage, str(config_file), str(result_file)]
        env = {**os.environ, LAUNCHED: "1"}
        done = subprocess.run(command, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"the {processes} training processes of `{stage}` failed (exit status {done.returncode}); "
                               "their messages are above")
        return json.loads(result_file.read_text(encoding="utf-8"))


def should_launch(processes: int) -> bool:
    """Whether this call must start the processes (rather than be one of them)."""
    return processes > 1 and not os.environ.get(LAUNCHED) and not distributed()


def trainer_arguments(processes: int, device: str | None) -> dict:
    """TrainingArguments for a distributed training: split every global batch across the processes; gloo on CPU."""
    if not distributed():
        return {}
    backend = "nccl" if resolve_device(device).startswith("cuda") else "gloo"
    return {"accelerator_config": {"split_batches": True}, "ddp_backend": backend,
            "ddp_find_unused_parameters": True}  # e.g. a BERT pooler that mean pooling never uses


@contextlib.contextmanager
def output_folder(output: Path, overwrite: bool) -> Iterator[Path]:
    """Where a trainer writes its output: the atomic output folder in the first process; a scratch folder, thrown
    away, in the others (they train alongside, the first one writes)."""
    if is_main():
        with atomic_dir(output, overwrite=overwrite) as tmp:
            yield tmp
    else:
        with tempfile.TemporaryDirectory(prefix=f"rtune-rank{rank()}-") as scratch:
            yield Path(scratch)


def with_shared_checkpoints(config):
    """In a distributed training every process must checkpoint into the same folder (each saves its own RNG state
    there): without a --checkpoint-dir, one beside the output, removed with the rest once the model is written."""
    if not distributed() or getattr(config, "checkpoint_dir", None) is not None:
        return config
    return config.model_copy(update={"checkpoint_dir": config.output.parent / f".{config.output.name}.checkpoints"})


def discard_shared_checkpoints(config) -> None:
    """After the model is written: remove the checkpoint folder `with_shared_checkpoints` made (not one the user gave)."""
    derived = config.output.parent / f".{config.output.name}.checkpoints"
    if distributed() and is_main() and getattr(config, "checkpoint_dir", None) == derived:
        import shutil

        shutil.rmtree(derived, ignore_errors=True)


# a training loop of rtune's own (the LLM reranker's): the same sharing, by hand ---------------------------------------
def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def process_device(device: str | None) -> str | None:
    """This process's device: on a distributed GPU training, its own GPU (cuda:<local rank>)."""
    if distributed() and resolve_device(device).startswith("cuda"):
        return f"cuda:{local_rank()}"
    return device


def data_parallel(model):
    """`model` wrapped for a distributed training (the process group started on first use; gloo on CPU)."""
    import torch
    import torch.distributed as dist

    cuda = next(model.parameters()).is_cuda
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank()] if cuda else None,
                                                     broadcast_buffers=False, find_unused_parameters=True)


def unwrap(model):
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model) if distributed() else model


def process_share(rows: list) -> list:
    """This process's equal share of a batch's rows (all of them on one process); [] for a tail too short to split."""
    if not distributed():
        return rows
    each = len(rows) // world_size()
    return rows[rank() * each:(rank() + 1) * each]


def mean_over_processes(value: float) -> float:
    """`value` averaged over the processes (the loss of the whole batch), or itself on one process."""
    if not distributed():
        return value
    import torch
    import torch.distributed as dist

    total = torch.tensor([value], dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(total)
    return float(total.item()) / world_size()
