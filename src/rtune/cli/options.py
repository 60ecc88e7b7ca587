"""One shared builder: a stage's click options generated from its pydantic config, plus `--config YAML`."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

import click
from pydantic import BaseModel, ValidationError

from rtune.cli.help import REQUIRED, PanelCommand
from rtune.data.atomic import check_output_not_input, check_writable
from rtune.data.yaml_file import read_yaml_mapping
from rtune.errors import InputError, Interrupted
from rtune.models.encoder_options import EncoderOptions


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(annotation: Any) -> Any:
    """Strip Optional[...] / `X | None`."""
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


def field_choices(field) -> list[str] | None:
    """A field's valid values: its Literal's, or the registry named by `json_schema_extra={"choices": ...}`."""
    annotation = _base_type(field.annotation)
    if get_origin(annotation) is typing.Literal:
        return [str(a) for a in get_args(annotation)]
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return [str(c) for c in extra["choices"]] if "choices" in extra else None


def option_for(name: str, field, panel: str | None = None) -> click.Parameter:
    """A click option mirroring one config field: lists are comma-separated, registries and Literals are choices,
    required fields say so in --help (they may also come from --config, so click does not enforce them)."""
    annotation = _base_type(field.annotation)
    help_text = field.description or ""
    default_shown = None if field.is_required() else field.get_default(call_default_factory=True)
    if default_shown not in (None, [], ""):
        shown = ",".join(map(str, default_shown)) if isinstance(default_shown, list) else default_shown
        help_text = f"{help_text} [default: {shown}]".strip()
    if field.is_required():
        help_text = f"{help_text} {REQUIRED}".strip()
    choices = field_choices(field)
    if annotation is bool:
        option = click.Option([f"{_flag(name)}/--no-{name.replace('_', '-')}"], default=None, help=help_text)
    elif choices is not None:
        option = click.Option([_flag(name)], type=click.Choice(choices), default=None, help=help_text)
    elif get_origin(annotation) is list:
        option = click.Option([_flag(name)], type=str, default=None, help=f"comma-separated; {help_text}")
    else:
        click_type = {int: int, float: float, Path: click.Path(path_type=Path)}.get(annotation, str)
        option = click.Option([_flag(name)], type=click_type, default=None, help=help_text)
    option.panel = panel
    return option


def _reason(error: dict[str, Any]) -> str:
    """pydantic's message without its "Value error, " / "Assertion failed, " prefix."""
    if error["type"] in ("value_error", "assertion_error") and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])
    return error["msg"]


def build_config(config_cls: type[BaseModel], values: dict[str, Any], config_file: Path | None,
                 positional: tuple[str, ...] = ()) -> BaseModel:
    """YAML file first, flags on top; validation errors name the flag (or the positional argument)."""
    merged: dict[str, Any] = {}
    if config_file is not None:

        loaded = read_yaml_mapping(config_file, "config must be a mapping of option names to values")
        merged.update({k.replace("-", "_"): v for k, v in loaded.items()})
    for name, value in values.items():
        if value is None:
            continue
        field = config_cls.model_fields[name]
        if get_origin(_base_type(field.annotation)) is list and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        merged[name] = value
    try:
        return config_cls(**merged)
    except ValidationError as err:
        first = err.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        where = _flag(name) if name in config_cls.model_fields else name
        if first["type"] == "missing":
            if name in positional:
                raise InputError(f"missing argument {name.upper()} (or '{name}:' in --config)") from None
            raise InputError(f"missing required option {where}") from None
        if first["type"] == "extra_forbidden" and config_file is not None:
            raise InputError(f"unknown option '{name}'; valid: {', '.join(config_cls.model_fields)}", config_file) from None
        raise InputError(f"{where}: {_reason(first)}") from None


def check_outputs(config: BaseModel) -> None:
    """Before any work: a cache folder the user named must be writable (the default one may degrade), and
    the output must not be (or contain) an input, which `--overwrite` would delete."""
    cache_dir = getattr(config, "cache_dir", None)
    if cache_dir is not None and getattr(config, "cache", False):
        check_writable(cache_dir, "embedding cache (--cache-dir)", inside=True)
    output = getattr(config, "output", None)
    if output is not None:
        inputs = {name: value for name, value in config if name not in ("output", "cache_dir")
                  and isinstance(value, (str, Path)) and str(value)}
        check_output_not_input(output, inputs)


def stage_command(name: str, config_cls: type[BaseModel], run, help_text: str, positional: tuple[str, ...] = (),
                  panels: dict[str, tuple[str, ...]] | None = None) -> click.Command:
    """A click command whose options are `config_cls`'s fields; `run(config)` does the work. `panels` groups
    options in --help ({panel title: field names}; "*encoder" stands for every shared encoder option)."""
    panel_of = {}
    for title, names in (panels or {}).items():
        for field_name in names:
            for member in (EncoderOptions.model_fields if field_name == "*encoder" else [field_name]):
                panel_of.setdefault(member, title)
    params: list[click.Parameter] = []
    for field_name in positional:
        argument = click.Argument([field_name], required=False, type=click.Path(path_type=Path))
        argument.help = f"{config_cls.model_fields[field_name].description or ''} {REQUIRED}".strip()  # shown by PanelCommand
        params.append(argument)
    own = set(config_cls.__annotations__)  # the stage's own options first, shared ones (e.g. encoder) after
    for field_name, field in sorted(config_cls.model_fields.items(), key=lambda item: item[0] not in own):
        if field_name not in positional:
            params.append(option_for(field_name, field, panel_of.get(field_name)))
    params.append(click.Option(["--config", "config_file"], type=click.Path(path_type=Path, exists=True, dir_okay=False),
                               default=None, help="YAML file with these options (flags override it)"))

    def callback(config_file: Path | None = None, **values: Any) -> None:
        config = build_config(config_cls, values, config_file, positional)
        check_outputs(config)
        try:
            run(config)
        except KeyboardInterrupt:
            raise Interrupted(name, getattr(config, "output", None)) from None

    command = PanelCommand(name, params=params, callback=callback, help=help_text)
    command.panel_order = list(panels or {})
    return command
