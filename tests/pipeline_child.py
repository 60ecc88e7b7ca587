"""Child process for the SIGKILL tests: runs a pipeline and pauses at a known point inside a stage.

usage: python pipeline_child.py PIPELINE.yaml MARKER mine|train [STEP]
The pause is installed from here (no hook in the library): after the first training group is written, or
once the first training stage has saved its checkpoint of optimiser step STEP (default 4: in the middle of
the second epoch of the test pipeline's first training). The marker file tells the test the process is in the
middle of the stage.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def _pause(marker: Path) -> None:
    marker.write_text("paused")
    while True:
        time.sleep(1)


def pause_in_mining(marker: Path) -> None:
    import contextlib

    import rtune.mine.run as mine_run

    original = mine_run.group_writer

    @contextlib.contextmanager
    def writer(path):
        with original(path) as write:
            def write_then_pause(group):
                write(group)
                _pause(marker)
            yield write_then_pause

    mine_run.group_writer = writer


def pause_in_training(marker: Path, step: int = 4) -> None:
    from transformers import TrainerCallback

    import rtune.train.bi_encoder as bi_encoder

    class PauseAfterCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step >= step:
                _pause(marker)

    original = bi_encoder.build_trainer

    def build(*args, **kwargs):
        trainer = original(*args, **kwargs)
        trainer.add_callback(PauseAfterCheckpoint())
        return trainer

    bi_encoder.build_trainer = build


if __name__ == "__main__":
    pipeline, marker, where = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    if where == "train":
        pause_in_training(marker, *map(int, sys.argv[4:5]))
    else:
        pause_in_mining(marker)
    from rtune.pipeline.runner import run_pipeline

    run_pipeline(pipeline)
