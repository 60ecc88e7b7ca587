"""`--set path=value` overrides, applied to the raw pipeline mapping before validation."""

from __future__ import annotations

from typing import Any

from rtune.errors import InputError


def _parse_value(text: str) -> Any:
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 as text
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _stage_entry(stages: list, name: str) -> dict:
    """The stage entry called `name`, or the body of the rounds block called `name`."""
    names = []
    for entry in stages:
        if not isinstance(entry, dict):
            continue
        body = entry.get("rounds") if isinstance(entry.get("rounds"), dict) else None
        own = body.get("name", "dense") if body is not None else entry.get("name")
        names.append(str(own))
        if own == name:
            return body if body is not None else entry
    raise InputError(f"--set: no stage '{name}'; stages: {', '.join(names)}")


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one `a.b.c=value` (value read as YAML: 2, 0.5, true, [1, 5], text) to `raw` in place."""
    path, sep, value = assignment.partition("=")
    parts = [k.strip() for k in path.split(".") if k.strip()]
    keys = [k.replace("-", "_") for k in parts]
    if not sep or not keys:
        raise InputError(f"--set '{assignment}': expected dotted.path=value, e.g. stages.train.epochs=2")
    if not value.strip():  # an empty value would fall back to a default silently (e.g. output -> runs/<name>)
        raise InputError(f"--set '{assignment}': no value for '{path.strip()}'; give one (for an empty text write "
                         f"{path.strip()}='\"\"')")
    target: Any = raw
    rest = keys[:-1]
    if keys[0] == "stages":
        if len(keys) < 3:
            raise InputError(f"--set '{assignment}': name a stage and a field, e.g. stages.train.epochs=2")
        target, rest = _stage_entry(raw.get("stages") or [], parts[1]), keys[2:-1]
    for key in rest:
        if not isinstance(target, dict):
            raise InputError(f"--set '{assignment}': '{key}' is not inside a mapping")
        target = target.setdefault(key, {})
    if not isinstance(target, dict):
        raise InputError(f"--set '{assignment}': cannot set a field inside a value")
    target[keys[-1]] = _parse_value(value)


def apply_overrides(raw: dict, assignments: list[str]) -> dict:
    for assignment in assignments:
        apply_override(raw, assignment)
    return raw
