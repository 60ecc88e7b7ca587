"""BM25 over a corpus with bm25s: a stemmer where the language has one, stopwords where bm25s has a list."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from rtune.data.manifest import read_manifest
from rtune.index.ranking import RankedBatch, collect, no_given, with_progress

log = logging.getLogger(__name__)

# ISO 639-1 code -> Snowball algorithm name (PyStemmer). Languages absent here (e.g. Vietnamese) go unstemmed.
_ISO_TO_STEMMER = {
    "ar": "arabic", "ca": "catalan", "cs": "czech", "da": "danish", "de": "german", "el": "greek",
    "en": "english", "es": "spanish", "et": "estonian", "eu": "basque", "fi": "finnish", "fr": "french",
    "ga": "irish", "hi": "hindi", "hu": "hungarian", "hy": "armenian", "id": "indonesian", "it": "italian",
    "lt": "lithuanian", "ne": "nepali", "nl": "dutch", "no": "norwegian", "fa": "persian", "pl": "polish",
    "pt": "portuguese", "ro": "romanian", "ru": "russian", "sr": "serbian", "sv": "swedish", "ta": "tamil",
    "tr": "turkish",
}
_STOPWORD_LANGUAGES = {"en", "de", "nl", "fr", "es", "pt", "it", "ru", "sv", "no", "zh", "tr", "ko", "da"}
# Unicode words of one letter or more: Vietnamese and other syllabic scripts have meaningful 1-letter words.
TOKEN_PATTERN = r"(?u)\b\w+\b"


def _import_bm25s():
    """bm25s sets its logger to DEBUG on import; let it inherit the application's level instead."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.NOTSET)
    return bm25s


def make_stemmer(language: str):
    """A PyStemmer stemmer for an ISO code or Snowball name, or None when the language has none."""
    import Stemmer

    name = _ISO_TO_STEMMER.get(language, language)
    if name in Stemmer.algorithms():
        return Stemmer.Stemmer(name)
    log.info("no stemmer for language '%s': BM25 runs on unstemmed tokens", language)
    return None


DEFAULT_LANGUAGE = "en"


def dataset_language(option: str | None, dataset: str | Path | None) -> str:
    """The BM25 language: `option` when given, else the one `rtune prepare --language` recorded in the dataset's
    manifest, else English. An option that contradicts the recorded language is used, with a warning."""
    recorded = None
    if dataset is not None:
        try:
            recorded = (read_manifest(dataset).get("config") or {}).get("language")
        except (OSError, ValueError):  # an unreadable manifest only costs the default
            recorded = None
    if option is None:
        language = recorded or DEFAULT_LANGUAGE
        log.info("BM25 language: %s (%s)", language, "from the dataset's manifest" if recorded else "default")
        return language
    if recorded and recorded != option:
        log.warning("BM25 language %s (--language) but the dataset was prepared as %s", option, recorded)
    return option


def stopwords_for(language: str) -> str | None:
    code = {v: k for k, v in _ISO_TO_STEMMER.items()}.get(language, language)
    return code if code in _STOPWORD_LANGUAGES else None


class BM25Index:
    """Build once over a corpus, then rank many queries (rtune.index.ranking.CorpusIndex).

    Each query is scored over the whole corpus and cut to its top k at once, so memory is the index plus
    one score vector, whatever the number of queries.
    """
    name = "bm25"

    def __init__(self, language: str = "en", k1: float = 1.5, b: float = 0.75, method: str = "lucene") -> None:
        self.language = language
        self.k1, self.b, self.method = k1, b, method
        self.stemmer = make_stemmer(language)
        self.stopwords = stopwords_for(language)
        self._retriever = None
        self.size = 0

    def tokenize(self, texts: Sequence[str], show_progress: bool = False) -> list[list[str]]:
        bm25s = _import_bm25s()

        return bm25s.tokenize(list(texts), token_pattern=TOKEN_PATTERN, stopwords=self.stopwords,
                              stemmer=self.stemmer, return_ids=False, show_progress=show_progress)

    def index(self, texts: Sequence[str], show_progress: bool = False) -> BM25Index:
        """Index `texts` (the corpus as retrieval sees it: rtune.data.text.document_text)."""
        bm25s = _import_bm25s()

        # Token ids (not strings) go to bm25s: one int list per document instead of a string list and its copy.
        tokenized = bm25s.tokenize(list(texts), token_pattern=TOKEN_PATTERN, stopwords=self.stopwords,
                                   stemmer=self.stemmer, return_ids=True, show_progress=show_progress)
        self._retriever = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        self._retriever.index(tokenized, show_progress=show_progress)
        self.size = len(texts)
        return self

    def _token_ids(self, queries: Sequence[str]) -> list[list[int]]:
        """Each query's vocabulary ids; words the corpus never uses cannot match and are left out."""
        if self._retriever is None:
            raise RuntimeError("call index() before searching")
        vocab = self._retriever.vocab_dict
        return [[vocab[t] for t in tokens if t and t in vocab] for tokens in self.tokenize(queries)]

    def _scores_of(self, ids: list[int]) -> np.ndarray:
        """BM25 score of every document for one query's token ids, shape (size,); no ids: all 0."""
        if not ids:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._retriever.get_scores_from_ids(ids), dtype=np.float32)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for one query, shape (size,)."""
        return self._scores_of(self._token_ids([query])[0])

    def rank_all(self, queries: Sequence[str], k: int, batch_size: int = 1024,
                 given: Sequence[Sequence[int]] | None = None) -> Iterator[RankedBatch]:
        """Top-k per query, best first (ties: lower position first). Only documents sharing a term with the
        query (score > 0) are ranked; missing places hold position -1 and score 0, as FAISS reports them."""
        k = min(k, self.size)
        given = given if given is not None else no_given(len(queries))
        step = min(batch_size, 64)  # small batches: progress moves, and nothing here gains from larger ones
        for start in range(0, len(queries), step):
            ids = self._token_ids(queries[start : start + step])
            positions = np.full((len(ids), k), -1, dtype=np.int64)
            scores = np.zeros((len(ids), k), dtype=np.float32)
            given_scores = []
            for row, (query_ids, asked) in enumerate(zip(ids, given[start : start + step])):
                full = self._scores_of(query_ids)  # (size,): freed before the next query is scored
                top = top_k_positions(full, k)
                positions[row, : len(top)], scores[row, : len(top)] = top, full[top]
                given_scores.append([float(full[p]) for p in asked])
                del full  # one score vector alive at a time, even while the next one is computed
            yield RankedBatch(start, positions, scores, given_scores)

    SETTINGS_FILE = "rtune_bm25.json"

    def save(self, folder: str | Path) -> Path:
        """Write the index to `folder` (bm25s's own files, memory-mapped on load, plus rtune_bm25.json: language,
        k1, b, method and size), so a saved Retriever serves BM25 without tokenising its corpus again."""
        import json

        if self._retriever is None:
            raise RuntimeError("call index() before save()")
        folder = Path(folder)
        self._retriever.save(str(folder), show_progress=False)
        settings = {"language": self.language, "k1": self.k1, "b": self.b, "method": self.method, "size": self.size}
        (folder / self.SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> BM25Index:
        """An index written by `save` (the score matrix memory-mapped)."""
        import json

        folder = Path(folder)
        settings = json.loads((folder / cls.SETTINGS_FILE).read_text(encoding="utf-8"))
        index = cls(settings["language"], settings["k1"], settings["b"], settings["method"])
        index._retriever = _import_bm25s().BM25.load(str(folder), mmap=True, show_progress=False)
        index.size = int(settings["size"])
        return index

    def search(self, queries: Sequence[str], k: int, show_progress: bool = False,
               batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Top-k corpus positions and scores per query (see `rank_all`). Shapes: (n_queries, min(k, size))."""
        batches = with_progress(self.rank_all(queries, k, batch_size), len(queries), "BM25 search", show_progress)
        return collect(batches, min(k, self.size))


def top_k_positions(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the (at most) k highest positive scores, best first; equal scores keep corpus order."""
    matching = np.flatnonzero(scores > 0)
    if len(matching) > k:
        kth = np.partition(scores[matching], len(matching) - k)[len(matching) - k]
        matching = matching[scores[matching] >= kth]  # every position tied with the k-th, for the tie-break
    order = np.lexsort((matching, -scores[matching]))
    return matching[order][:k]
