"""BM25 over a corpus with bm25s: a stemmer where the language has one, stopwords where bm25s has a list."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

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


def stopwords_for(language: str) -> str | None:
    code = {v: k for k, v in _ISO_TO_STEMMER.items()}.get(language, language)
    return code if code in _STOPWORD_LANGUAGES else None


class BM25Index:
    """Build once over a corpus, then search many queries: `search(texts, k) -> (indices, scores)`."""

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
        bm25s = _import_bm25s()

        self._retriever = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        self._retriever.index(self.tokenize(texts, show_progress), show_progress=show_progress)
        self.size = len(texts)
        return self

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for one query, shape (size,)."""
        return self.batch_scores([query])[0]

    def batch_scores(self, queries: Sequence[str]) -> list[np.ndarray]:
        if self._retriever is None:
            raise RuntimeError("call index() before searching")
        vocab = self._retriever.vocab_dict
        out = []
        for tokens in self.tokenize(queries):
            # Words the corpus never uses cannot match; a query left with none scores every document 0.
            ids = [vocab[t] for t in tokens if t and t in vocab]
            if ids:
                out.append(np.asarray(self._retriever.get_scores_from_ids(ids), dtype=np.float32))
            else:
                out.append(np.zeros(self.size, dtype=np.float32))
        return out

    def search(self, queries: Sequence[str], k: int, show_progress: bool = False,
               batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Top-k corpus positions and scores per query, best first (ties: lower position first).

        Only documents sharing a term with the query (score > 0) are ranked; missing places hold position -1
        and score 0, as FAISS reports them. Shapes: (n_queries, min(k, size)).
        """
        from tqdm.auto import tqdm

        k = min(k, self.size)
        indices, scores = [], []
        bar = tqdm(total=len(queries), desc="BM25 search", unit="q", disable=not show_progress)
        for start in range(0, len(queries), batch_size):
            positions, top_scores = top_k_rows(self.batch_scores(queries[start : start + batch_size]), k)
            indices.append(positions)
            scores.append(top_scores)
            bar.update(len(positions))
        bar.close()
        if not indices:
            return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
        return np.concatenate(indices), np.concatenate(scores)


def top_k_rows(full_scores: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query's top-k (positions, scores) from its full score vector: shapes (n, k), empty places -1 / 0."""
    positions = np.full((len(full_scores), k), -1, dtype=np.int64)
    scores = np.zeros((len(full_scores), k), dtype=np.float32)
    for row, full in enumerate(full_scores):
        top = top_k_positions(full, k)
        positions[row, : len(top)], scores[row, : len(top)] = top, full[top]
    return positions, scores


def top_k_positions(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the (at most) k highest positive scores, best first; equal scores keep corpus order."""
    matching = np.flatnonzero(scores > 0)
    if len(matching) > k:
        kth = np.partition(scores[matching], len(matching) - k)[len(matching) - k]
        matching = matching[scores[matching] >= kth]  # every position tied with the k-th, for the tie-break
    order = np.lexsort((matching, -scores[matching]))
    return matching[order][:k]
