"""Splits: by group and by query, fractions, leak detection."""

from __future__ import annotations

import pytest

from conftest import write_beir
from rtune.data.beir import read_beir
from rtune.data.dataset import RetrievalDataset
from rtune.data.records import Document, Query
from rtune.data.splits import SplitFractions, check_leaks, cross_split_report, split_dataset
from rtune.data.squad import read_squad
from rtune.errors import InputError


def test_group_split_keeps_groups_whole_and_is_seeded(squad_file):
    dataset = read_squad(squad_file)
    fractions = SplitFractions(train=0.5, dev=0.25, test=0.25)
    split = split_dataset(dataset, fractions, by="group", seed=1)
    groups = {name: {dataset.queries[q].group for q in table} for name, table in split.qrels.items()}
    assert [len(groups[s]) for s in ("train", "dev", "test")] == [2, 1, 1]
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["dev"]) and not (groups["dev"] & groups["test"])
    assert split_dataset(dataset, fractions, by="group", seed=1).qrels == split.qrels
    assert any(split_dataset(dataset, fractions, by="group", seed=s).qrels != split.qrels for s in range(2, 8))


def test_fraction_that_empties_a_split_is_refused(squad_file):
    with pytest.raises(InputError, match="leaves the 'dev' split empty"):
        split_dataset(read_squad(squad_file), SplitFractions(train=0.9, dev=0.05, test=0.05), by="group")
    with pytest.raises(ValueError, match="must sum to 1"):
        SplitFractions(train=0.5, dev=0.1, test=0.1)


def _dup_dataset() -> RetrievalDataset:
    corpus = {f"d{i}": Document(f"d{i}", f"passage {i}") for i in range(4)}
    queries = {"a": Query("a", "When did it end?"), "b": Query("b", "when did  it END?"),
               "c": Query("c", "When did it end?"), "d": Query("d", "Other?"), "e": Query("e", "More?")}
    qrels = {"all": {"a": {"d0": 1}, "b": {"d0": 1}, "c": {"d1": 1}, "d": {"d2": 1}, "e": {"d3": 1}}}
    return RetrievalDataset(corpus, queries, qrels)


def test_query_split_keeps_identical_text_and_positive_together():
    for seed in range(20):
        split = split_dataset(_dup_dataset(), SplitFractions(train=0.5, dev=0.25, test=0.25), by="query", seed=seed)
        where = {q: s for s, table in split.qrels.items() for q in table}
        assert where["a"] == where["b"]  # same text (normalised), same positive: one unit
        assert not cross_split_report(split).leaks


def test_leaks_are_detected_and_refused_unless_allowed(tmp_path):
    docs = {"d0": "same passage", "d1": "another passage", "d2": "third"}
    queries = {"q0": ("Same question?", "d0", ""), "q1": ("same  QUESTION?", "d0", ""), "q2": ("Same question?", "d1", ""),
               "q3": ("x?", "d2", "")}
    folder = write_beir(tmp_path / "leaky", docs, queries, splits={"train": ["q0", "q3"], "test": ["q1", "q2"]})
    report = cross_split_report(read_beir(folder))
    assert len(report.shared_texts) == 1  # q2 repeats the text with another positive: legitimate
    assert report.leaks == [{"text": "same question?", "train": "q0", "test": "q1"}]
    with pytest.raises(InputError, match="1 true leak"):
        check_leaks(report, allow_leaks=False)
    check_leaks(report, allow_leaks=True)


def test_group_split_needs_groups():
    with pytest.raises(InputError, match="has no group; split by query instead"):
        split_dataset(_dup_dataset(), SplitFractions(), by="group")
