"""YAML files people write (pipelines, `--config` option files): read strictly, so a key given twice is an
error naming the key and both lines instead of the last one silently winning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rtune.errors import InputError


def _unique_key_loader():
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """SafeLoader that refuses a mapping holding the same key twice."""

        def construct_mapping(self, node, deep=False):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise InputError(f"key '{key}' is given twice (lines {seen[key]} and {line}); keep one",
                                     getattr(self, "rtune_path", None), line)
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def load_yaml_text(text: str, path: str | Path | None = None) -> Any:
    """Parse YAML text strictly (duplicate keys are errors naming `path` and the line)."""
    import yaml

    loader = _unique_key_loader()(text)
    loader.rtune_path = None if path is None else str(path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(f"not valid YAML: {getattr(err, 'problem', None) or err}", path,
                         mark.line + 1 if mark is not None else None) from None
    finally:
        loader.dispose()


def read_yaml_mapping(path: str | Path, what: str) -> dict:
    """A YAML file holding a mapping; `what` says what the mapping should be when it is not one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read: {err}", path) from None
    raw = load_yaml_text(text, path)
    if not isinstance(raw, dict):
        raise InputError(what, path)
    return raw
