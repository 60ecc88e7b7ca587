"""Stage `score`: write teacher scores (`pos_scores`, `neg_scores`) for every text of a training-groups file.

Resumable: scores go into shard files (see rtune.score.shards) as they finish; a rerun of the same config
on the same input after a crash or SIGKILL continues at the first missing shard. The output folder appears
whole (groups.jsonl + manifest.json) only when every shard is done.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rtune.data.atomic import atomic_dir, atomic_file, ensure_new_output
from rtune.data.groups import GROUPS_FILE, cut_negatives, group_writer, read_groups, sample_groups
from rtune.data.identity import content_identity
from rtune.data.manifest import MANIFEST_NAME, write_manifest
from rtune.data.records import TrainingGroup
from rtune.errors import InputError
from rtune.index.embedding_cache import default_cache_dir
from rtune.models.fingerprint import encoder_fingerprint
from rtune.models.precision import compute_identity
from rtune.models.rerankers.batching import score_pairs
from rtune.models.rerankers.protocol import Reranker
from rtune.models.rerankers.registry import load_reranker
from rtune.score.config import ScoreConfig
from rtune.score.shards import ShardStore, work_dir
from rtune.stage import GROUPS, MODEL, RERANKER, StageSpec, result_settings

log = logging.getLogger(__name__)


def _chunks(groups: Iterator[TrainingGroup], size: int) -> Iterator[list[TrainingGroup]]:
    while chunk := list(itertools.islice(groups, size)):
        yield chunk


def _selected(path: Path, config: ScoreConfig, chosen: set[int] | None) -> Iterator[TrainingGroup]:
    """The groups to score, in file order: those at the `chosen` positions (all when None), negatives cut."""
    for index, group in enumerate(read_groups(path)):
        if chosen is None or index in chosen:
            yield cut_negatives(group, config.max_negatives)


def _survey(path: Path, config: ScoreConfig) -> tuple[list[int], list[int], set[int] | None]:
    """Validate every group before any model loads; return the chosen groups' line numbers and text counts, and
    the chosen positions (a seeded sample of `max_queries`, as `rtune train --max-queries` samples; None = all)."""
    with open(path, encoding="utf-8") as handle:
        lines = [number for number, line in enumerate(handle, start=1) if line.strip()]  # one per group
    n = len(lines)
    chosen = None if config.max_queries is None or config.max_queries >= n else set(sample_groups(range(n), config.max_queries, config.seed))
    sizes = [len(g.pos) + len(g.neg) for g in _selected(path, config, chosen)]
    return [line for i, line in enumerate(lines) if chosen is None or i in chosen], sizes, chosen


def _model_identity(model: str) -> str:
    """The teacher's weights: a folder's content (an adapter folder's with its base's), else the id."""
    path = Path(model).expanduser()
    return encoder_fingerprint(str(path), default_cache_dir()) if path.is_dir() else f"id:{model}"


def _score_shard(teacher: Reranker, groups: list[TrainingGroup], first: int, lines: list[int], config: ScoreConfig,
                 path: Path, progress) -> tuple[list, list]:
    """Score one shard's pairs; a non-finite score raises InputError naming the group's line."""
    pairs = [(g.query, text) for g in groups for text in (*g.pos, *g.neg)]
    scores = score_pairs(teacher, pairs, config.batch_size, progress.update)  # (n_pairs,)
    bad = np.flatnonzero(~np.isfinite(scores))
    pos_scores, neg_scores, start = [], [], 0
    for offset, group in enumerate(groups):
        end = start + len(group.pos) + len(group.neg)
        if bad.size and start <= bad[0] < end:
            i = int(bad[0]) - start
            which = f"positive {i + 1}" if i < len(group.pos) else f"negative {i - len(group.pos) + 1}"
            raise InputError(f"teacher {teacher.name} gave a non-finite score ({scores[bad[0]]}) for the {which} "
                             f"of this group; finished shards are kept, a rerun resumes after them", path, lines[first + offset])
        pos_scores.append(scores[start:start + len(group.pos)].tolist())
        neg_scores.append(scores[start + len(group.pos):end].tolist())
        start = end
    return pos_scores, neg_scores


def score_groups(config: ScoreConfig, teacher: Reranker | None = None) -> dict:
    """Run the stage (optionally with a ready `teacher`); return counts, speed and the teacher's settings."""
    from tqdm.auto import tqdm

    started = time.time()
    path = config.groups_file()
    if not path.is_file():
        raise InputError("file not found", path)
    ensure_new_output(config.output, config.overwrite)  # fail before the work, not after
    lines, sizes, chosen = _survey(path, config)
    teacher = teacher or load_reranker(config.model, config.teacher, **config.teacher_settings())
    teacher_record = {"name": teacher.name, "settings": teacher.settings()}
    key = {"input": content_identity(path), "model": _model_identity(config.model), "teacher": teacher_record,
           "config": result_settings(config, exclude={"groups"}), "compute": compute_identity(config.device, config.precision)}
    store = ShardStore(work_dir(config.output, key), key)
    n_shards = math.ceil(len(sizes) / config.shard_size)
    done = [store.read(i, i * config.shard_size, len(sizes[i * config.shard_size:(i + 1) * config.shard_size])) is not None
            for i in range(n_shards)]
    resumed_pairs = sum(sum(sizes[i * config.shard_size:(i + 1) * config.shard_size]) for i in range(n_shards) if done[i])
    if any(done):
        log.info("resuming: %d of %d shards already scored in %s", sum(done), n_shards, store.folder)
    scoring_started = time.time()
    with tqdm(total=sum(sizes), initial=resumed_pairs, unit="pair", desc=f"scoring with {teacher.name}") as progress:
        for index, chunk in enumerate(_chunks(_selected(path, config, chosen), config.shard_size)):
            if not done[index]:
                first = index * config.shard_size
                store.write(index, first, *_score_shard(teacher, chunk, first, lines, config, path, progress))
    seconds = time.time() - scoring_started
    scored_pairs = sum(sizes) - resumed_pairs
    stats = {"groups": len(sizes), "pairs": sum(sizes), "shards": n_shards, "shards_resumed": sum(done),
             "pairs_scored": scored_pairs, "pairs_per_second": round(scored_pairs / seconds, 2) if seconds > 0 else None,
             "teacher": teacher_record}
    with atomic_dir(config.output, overwrite=config.overwrite) as tmp:
        with group_writer(tmp / GROUPS_FILE) as write:
            for index, chunk in enumerate(_chunks(_selected(path, config, chosen), config.shard_size)):
                shard = store.read(index, index * config.shard_size, len(chunk))
                if shard is None:
                    raise RuntimeError(f"shard {index} vanished from {store.folder} while the output was written")
                for group, pos, neg in zip(chunk, *shard):
                    write(dataclasses.replace(group, pos_scores=tuple(pos), neg_scores=tuple(neg)))
        manifest_path = write_manifest(tmp, "score", config.model_dump(mode="json"), [path], started, stats)
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest["teacher"] = teacher_record
        with atomic_file(tmp / MANIFEST_NAME) as handle:
            json.dump(manifest, handle, indent=2, ensure_ascii=False, default=str)
            handle.write("\n")
    store.remove()
    log.info("scored %d pairs of %d groups (%s pairs/s) -> %s", sum(sizes), len(sizes), stats["pairs_per_second"], config.output)
    return {**stats, "output": str(config.output)}


def summary(config: ScoreConfig, stats: dict) -> list[str]:
    """The terminal's line after `rtune score`."""
    return [f"teacher scores for {stats['pairs']} pairs of {stats['groups']} groups ({stats['pairs_per_second']} pairs/s, "
            f"{stats['shards_resumed']} shards resumed) -> {config.output}"]


SCORE = StageSpec(
    name="score", config=ScoreConfig, run=score_groups, produces=GROUPS,
    help="Write teacher scores (pos_scores/neg_scores) into training groups with a cross-encoder, an LLM yes-token "
         "reranker or a bi-encoder; resumable.",
    refs={"groups": GROUPS, "model": (RERANKER, MODEL)},
    defaults=lambda settings: {"groups": GROUPS, "model": RERANKER},
    compute=lambda config: compute_identity(config.device, config.precision),
    summary=summary,
)
