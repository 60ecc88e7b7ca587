"""Why hard negatives lose on XQuAD-vi: how many BM25-mined negatives are really positives in disguise.

SQuAD-format answers are spans of their paragraph, so a mined negative that contains the question's gold answer text is
very likely a false negative (it answers the question too). This script mines BM25 negatives as the examples do
(`rtune prepare` split by article, `rtune mine --range 2-50 --negatives 7`) on XQuAD-vi, XQuAD-en (its English
original) and SQuAD dev, and reports per rank band: the share of negatives holding the gold answer, and the share from
the positive's own article; then it shows sampled suspicious XQuAD-vi negatives in English (XQuAD-en shares the
ids), so a reader can judge them. Writes the `false-negatives:bm25` section of RESULTS.md.

    python benchmarks/false_negatives.py            # a few minutes on 2 cores (BM25 only, no model)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, update_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RTUNE_DATA", REPO.parent / "shared" / "data"))
SETS = {"xquad-vi": ("xquad/xquad.vi.json", "vi"), "xquad-en": ("xquad/xquad.en.json", "en"),
        "squad": ("squad-v1.1/dev-v1.1.json", "en")}
BANDS = ((2, 5), (6, 20), (21, 50))


def answers_of(raw: Path) -> dict[str, list[str]]:
    """Question id -> its gold answer texts."""
    data = json.loads(raw.read_text(encoding="utf-8"))["data"]
    return {str(qa["id"]): [a["text"] for a in qa.get("answers") or [] if a.get("text", "").strip()]
            for article in data for paragraph in article["paragraphs"] for qa in paragraph["qas"]}


def mine_set(name: str, work: Path, range_: str = "2-50", negatives: int = 7) -> tuple[Path, Path]:
    from rtune.data.prepare import PrepareConfig, prepare
    from rtune.mine.config import MineConfig
    from rtune.mine.run import mine

    raw, language = SETS[name]
    dataset = work / name / "data"
    prepare(PrepareConfig(input=DATA / raw, output=dataset, language=language, train=0.6, dev=0.2, test=0.2, seed=42))
    mine(MineConfig(dataset=dataset, output=work / name / "mined", range=range_, negatives=negatives, seed=42))
    return dataset, work / name / "mined" / "groups.jsonl"


def analyse(name: str, dataset: Path, groups_file: Path) -> dict:
    from rtune.data.beir import read_beir
    from rtune.data.groups import read_groups

    beir = read_beir(dataset)
    answers = answers_of(DATA / SETS[name][0])
    counts = {band: [0, 0, 0, 0] for band in BANDS}  # negatives, holding an answer, a multi-word one, same article
    suspicious = []
    for group in read_groups(groups_file):
        golds = answers.get(group.query_id, [])
        article = beir.queries[group.query_id].group
        for doc_id, rank in zip(group.neg_ids, group.neg_ranks):
            band = next((b for b in BANDS if b[0] <= rank <= b[1]), None)
            if band is None:
                continue
            text = beir.corpus[doc_id].text
            holds = any(g in text for g in golds)
            specific = any(len(g.split()) >= 2 and g in text for g in golds)  # a short answer ("2005") matches by chance
            counts[band][0] += 1
            counts[band][1] += holds
            counts[band][2] += specific
            counts[band][3] += beir.corpus[doc_id].title == article.replace("_", " ")
            if specific:
                suspicious.append({"query_id": group.query_id, "negative": doc_id, "positive": group.pos_ids[0], "rank": rank})
    return {"bands": {f"{a}-{b}": {"negatives": n, "holding_gold_answer": round(h / n, 4) if n else None,
                                   "holding_multi_word_answer": round(m / n, 4) if n else None,
                                   "same_article": round(s / n, 4) if n else None}
                      for (a, b), (n, h, m, s) in counts.items()},
            "suspicious": suspicious}


def english_samples(suspicious: list[dict], en_dataset: Path, n: int = 6) -> list[str]:
    """The suspicious XQuAD-vi negatives shown through XQuAD-en (same ids): question, answer, the negative's sentence."""
    from rtune.data.beir import read_beir

    en = read_beir(en_dataset)
    answers = answers_of(DATA / SETS["xquad-en"][0])
    lines = []
    for item in random.Random(0).sample(suspicious, min(n, len(suspicious))):
        question = en.queries.get(item["query_id"])
        negative = en.corpus.get(item["negative"])
        gold = (answers.get(item["query_id"]) or [""])[0]
        if question is None or negative is None:
            continue
        sentence = next((s for s in negative.text.split(". ") if gold and gold in s), negative.text[:200])
        lines.append(f"- rank {item['rank']}: *{question.text}* (answer: \"{gold}\"); negative `{item['negative']}` "
                     f"(positive `{item['positive']}`): \"...{sentence.strip()[:240]}...\"")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rtune-fn-") as folder:
        work = Path(folder)
        results, datasets = {}, {}
        for name in SETS:
            dataset, groups = mine_set(name, work)
            datasets[name] = dataset
            results[name] = analyse(name, dataset, groups)
        samples = english_samples(results["xquad-vi"]["suspicious"], datasets["xquad-en"])
    lines = ["## BM25-mined negatives that hold the gold answer (`python benchmarks/false_negatives.py`)", "",
             f"- date: {date.today().isoformat()}; machine: {machine()}",
             "- data: XQuAD-vi, XQuAD-en (its English original) and SQuAD v1.1 dev, each split by article 60/20/20 "
             "(seed 42, the xquad-vi example's split); train queries mined as the example mines: BM25 in the prepared "
             "language, ranks 2-50, 7 negatives, seed 42",
             "- a negative holding the question's gold answer text is very likely a false negative (a second "
             "paragraph that answers it); same article: the negative comes from the positive's own article", "",
             "| set | rank band | negatives | holding the gold answer | holding a multi-word gold answer | same article |",
             "|---|---|---|---|---|---|"]
    for name, result in results.items():
        for band, row in result["bands"].items():
            share = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
            lines.append(f"| {name} | {band} | {row['negatives']} | {share(row['holding_gold_answer'])} | "
                         f"{share(row['holding_multi_word_answer'])} | {share(row['same_article'])} |")
    lines += ["", "Sampled XQuAD-vi negatives holding a multi-word gold answer, read through XQuAD-en:", "", *samples]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        update_results("false-negatives:bm25", text)


if __name__ == "__main__":
    main()
