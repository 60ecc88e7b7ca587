"""The one rule that decides the text every retrieval path sees for a document.

BM25, dense search, the embedding cache key, training groups and the Retriever all call `document_text`,
so a model is trained on the strings it is evaluated on. The rule follows BEIR tools: title + " " + text
when a title exists; a title-only record (empty text) is its title.
"""

from __future__ import annotations

from collections.abc import Iterable

from rtune.data.records import Document

TITLE_SEPARATOR = " "


def document_text(doc: Document, use_title: bool = True) -> str:
    """The text retrieval sees for `doc`: title + text (or text alone when `use_title` is off); the title
    when the text is empty."""
    title, text = doc.title.strip(), doc.text.strip()
    if not text:
        return title
    if use_title and title:
        return title + TITLE_SEPARATOR + text
    return text


def document_texts(docs: Iterable[Document], use_title: bool = True) -> list[str]:
    return [document_text(d, use_title) for d in docs]


def describe_rule(use_title: bool) -> str:
    """The rule in words, recorded in manifests and cache keys."""
    if use_title:
        return "title + ' ' + text (title alone when the text is empty)"
    return "text (title alone when the text is empty)"
