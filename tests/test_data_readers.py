"""Readers: BEIR, SQuAD, QA pairs, training groups; every bad input names its file and line."""

from __future__ import annotations

import io
import json

import pytest

from conftest import data_path, write_beir
from rtune.data.beir import read_beir, read_corpus, read_qrels, read_queries
from rtune.data.groups import group_writer, read_groups
from rtune.data.qa_pairs import passage_id, read_qa_pairs
from rtune.data.records import Document, Query, TrainingGroup
from rtune.data.squad import read_squad
from rtune.errors import InputError


def _lines(*rows) -> io.StringIO:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    stream = io.StringIO(text)
    stream.name = "mem.jsonl"
    return stream


def test_corpus_reads_paths_and_streams(toy_beir):
    assert len(read_corpus(toy_beir / "corpus.jsonl")) == 8
    corpus = read_corpus(_lines({"_id": "a", "text": "x", "title": "T"}, {"_id": 7, "text": "y"}))
    assert corpus["a"] == Document("a", "x", "T") and corpus["7"].text == "y"


@pytest.mark.parametrize(
    "rows, message, line",
    [
        (['{"_id": "a", "text": "ok"}', '{"_id": "b", "text": '], "malformed JSON", 2),
        ([{"_id": "a", "text": "ok"}, {"text": "no id"}], "missing field '_id'", 2),
        ([{"_id": "a", "text": "ok"}, {"_id": "b", "text": 5}], "field 'text' must be a string", 2),
        ([{"_id": "a", "text": "x"}, {"_id": "a", "text": "y"}], "duplicate document id 'a'", 2),
        (['["not", "an", "object"]'], "expected a JSON object", 1),
    ],
)
def test_corpus_errors_name_file_and_line(rows, message, line):
    with pytest.raises(InputError) as err:
        read_corpus(_lines(*rows))
    assert message in str(err.value)
    assert err.value.line == line and str(err.value).startswith(f"mem.jsonl:{line}: ")


def test_qrels_errors(toy_beir):
    queries = read_queries(toy_beir / "queries.jsonl")
    corpus = read_corpus(toy_beir / "corpus.jsonl")
    bad = toy_beir / "bad.tsv"
    cases = {
        "query-id\tcorpus-id\tscore\nq0\td0\t1\nqX\td0\t1\n": ("unknown query id 'qX'", 3),
        "q0\tdX\t1\n": ("unknown document id 'dX'", 1),
        "q0\td0\t1\nq1\td1\t0\n": ("query 'q1' has no positive", 2),
        "q0\td0\tgood\n": ("score 'good' is not an integer", 1),
        "q0\td0\t0.5\n": ("score '0.5' is not an integer", 1),
        "q0\td0\n": ("expected 3 tab-separated columns", 1),
        "q0\td0\t1\nq0\td0\t1\n": ("duplicate judgement", 2),
    }
    for text, (message, line) in cases.items():
        bad.write_text(text)
        with pytest.raises(InputError) as err:
            read_qrels(bad, queries, corpus)
        assert message in str(err.value) and err.value.line == line, text


def test_qrels_tolerate_trailing_whitespace(toy_beir, tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\t\r\n")
    assert read_qrels(path) == {"q0": {"d0": 1}}


def test_beir_round_trip(toy_beir, tmp_path):
    from rtune.data.beir import write_beir as write_folder

    dataset = read_beir(toy_beir)
    assert set(dataset.qrels) == {"train", "dev", "test"}
    assert dataset.split_queries("dev") == {"q6": Query("q6", "Who created the Python language?", "tech")}
    out = tmp_path / "copy"
    out.mkdir()
    write_folder(out, dataset)
    again = read_beir(out)
    assert again.corpus == dataset.corpus and again.qrels == dataset.qrels and again.queries == dataset.queries


def test_beir_query_in_two_splits_is_refused(tmp_path):
    folder = write_beir(tmp_path / "b", splits={"train": ["q0", "q1"], "test": ["q1"]})
    with pytest.raises(InputError, match="query 'q1' is judged in both 'test' and 'train'"):
        read_beir(folder)


def test_missing_split_lists_what_exists(toy_beir):
    with pytest.raises(InputError, match=r"no 'validation' split \(it has: dev, test, train\)"):
        read_beir(toy_beir).require_split("validation")


def test_squad_ids_groups_and_errors(squad_file, tmp_path):
    dataset = read_squad(squad_file)
    assert len(dataset.corpus) == 8 and len(dataset.queries) == 16
    assert dataset.qrels["all"]["a2p1q0"] == {"Article_2_1": 1}
    assert dataset.queries["a2p1q0"].group == "Article_2"
    assert dataset.corpus["Article_2_1"].title == "Article 2"
    raw = json.loads(squad_file.read_text())
    del raw["data"][1]["paragraphs"][0]["qas"][1]["question"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(InputError, match=r"bad.json: data\[1\].paragraphs\[0\].qas\[1\]: missing field 'question'"):
        read_squad(bad)
    raw = json.loads(squad_file.read_text())
    raw["data"][0]["paragraphs"][1]["qas"][0]["id"] = "a0p0q0"
    bad.write_text(json.dumps(raw))
    with pytest.raises(InputError, match="duplicate question id 'a0p0q0'"):
        read_squad(bad)
    bad.write_text('{"data": [')
    with pytest.raises(InputError, match="malformed JSON"):
        read_squad(bad)


def test_real_squad_and_xquad_counts():
    squad = read_squad(data_path("squad-v1.1", "dev-v1.1.json"))
    assert (len(squad.corpus), len(squad.queries)) == (2067, 10570)
    vi = read_squad(data_path("xquad", "xquad.vi.json"))
    assert (len(vi.corpus), len(vi.queries)) == (240, 1190)


def test_qa_pairs_passages_and_doc_ids(tmp_path):
    dataset = read_qa_pairs(_lines({"question": "q one?", "passage": "Some passage."},
                                   {"question": "q two?", "passage": "Some  passage.", "id": "x"},
                                   {"question": "q three?", "passage": "Other passage.", "group": "g"}))
    assert len(dataset.corpus) == 2  # identical passage text (up to whitespace) is one document
    assert dataset.qrels["all"]["x"] == {passage_id("Some passage."): 1}
    assert dataset.queries["q1"].group == passage_id("Some passage.") and dataset.queries["q3"].group == "g"
    corpus = {"d1": Document("d1", "text")}
    assert read_qa_pairs(_lines({"question": "q?", "doc_id": "d1"}), corpus).qrels["all"] == {"q1": {"d1": 1}}
    with pytest.raises(InputError, match=r"mem.jsonl:2: unknown document id 'd9'"):
        read_qa_pairs(_lines({"question": "q?", "doc_id": "d1"}, {"question": "q?", "doc_id": "d9"}), corpus)
    with pytest.raises(InputError, match="no corpus was given"):
        read_qa_pairs(_lines({"question": "q?", "doc_id": "d1"}))
    with pytest.raises(InputError, match=r"mem.jsonl:1: missing field 'doc_id' or 'passage'"):
        read_qa_pairs(_lines({"question": "q?"}))


def test_groups_round_trip_and_validation(tmp_path):
    group = TrainingGroup(query="q", pos=("p",), neg=("n1", "n2"), query_id="1", pos_ids=("d1",),
                          neg_ids=("d2", "d3"), neg_scores=(2.0, 1.0), neg_ranks=(2, 3), neg_sources=("bm25", "bm25"))
    path = tmp_path / "g.jsonl"
    with group_writer(path) as write:
        write(group)
    assert list(read_groups(path)) == [group]
    # FlagEmbedding's minimal format reads too
    assert list(read_groups(_lines({"query": "q", "pos": ["p"], "neg": []})))[0].neg == ()
    with pytest.raises(InputError, match="mem.jsonl:1: field 'pos' is empty"):
        list(read_groups(_lines({"query": "q", "pos": [], "neg": ["n"]})))
    with pytest.raises(InputError, match="field 'neg_scores' has 1 items for 2 texts"):
        list(read_groups(_lines({"query": "q", "pos": ["p"], "neg": ["a", "b"], "neg_scores": [1.0]})))


def test_group_writer_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "g.jsonl"
    with pytest.raises(RuntimeError):
        with group_writer(path) as write:
            write(TrainingGroup(query="q", pos=("p",), neg=()))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
