"""Options shared by every stage that embeds texts or reads documents (train, dense mining, eval): one
schema, one builder, one resolution of the encoder settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rtune.errors import check_choice
from rtune.models.encoder import SentenceTransformerEncoder
from rtune.models.icl import check_examples, read_examples
from rtune.models.loading import load_bi_encoder
from rtune.models.names import resolve_model
from rtune.models.precision import resolve_device
from rtune.models.settings import PADDING_SIDES, POOLINGS, TORCH_DTYPES, EncoderSettings

DTYPES: tuple[str, ...] = ("float32", "float16")  # how corpus embeddings are stored in the cache
SETTING_FIELDS = ("query_prompt", "document_prompt", "query_instruction", "query_format", "max_query_length",
                  "max_passage_length", "use_title", "pooling", "append_eos", "padding_side", "icl_examples",
                  "torch_dtype")


class EncoderOptions(BaseModel):
    """How a bi-encoder is loaded and fed, and where its embeddings are cached. Settings left unset come
    from the model's saved `rtune_encoder.json` (or its sentence-transformers prompts), then the defaults."""
    model_config = ConfigDict(extra="forbid")

    query_prompt: str | None = Field(None, description="prefix for queries [default: the model's saved one]")
    query_instruction: str | None = Field(None, description="instruction put into --query-format [default: the model's saved one]")
    query_format: str | None = Field(None, description="how instruction and query combine, e.g. '<instruct>{}\\n<query>{}' [default: '{}{}']")
    document_prompt: str | None = Field(None, description="prefix for documents [default: the model's saved one]")
    max_query_length: int | None = Field(None, ge=4, description="query length in tokens [default: the model's saved one, else its maximum]")
    max_passage_length: int | None = Field(None, ge=8, description="passage length in tokens [default: the model's saved one, else its maximum]")
    use_title: bool | None = Field(None, description="document text = title + text when a title exists [default: on, or the model's saved rule]")
    pooling: str | None = Field(None, description=f"pooling: {', '.join(POOLINGS)} [default: the model's own; last_token for a plain causal LM or GGUF file]")
    append_eos: bool | None = Field(None, description="append the tokenizer's EOS token to every text, so the last token sees the whole text [default: on with last_token pooling]")
    padding_side: str | None = Field(None, description=f"tokenizer padding side: {', '.join(PADDING_SIDES)} [default: left with last_token pooling, else the tokenizer's]")
    icl_examples: Path | list[dict[str, str]] | None = Field(None, description="in-context examples put before every query: a JSON Lines file of {\"query\", \"response\"} (or a JSON list) [default: the model's saved ones]")
    torch_dtype: str | None = Field(None, description=f"weights dtype when loading: {', '.join(TORCH_DTYPES)} [default: float32]")
    embedding_dtype: str = Field("float32", description="how corpus embeddings are stored in the cache",
                                 json_schema_extra={"choices": DTYPES})
    cache: bool = Field(True, description="reuse/keep corpus and query embeddings in the embedding cache")
    cache_dir: Path | None = Field(None, description="embedding cache folder [default: $RTUNE_CACHE_DIR or ~/.cache/rtune/embeddings]")
    encode_batch_size: int = Field(64, ge=1, description="texts encoded at once")
    encode_devices: list[str] | None = Field(None, description="encode in one process per device, e.g. cuda:0,cuda:1 "
                                             "(the same embeddings, faster on several GPUs) [default: one process]")
    device: str | None = Field(None, description="torch device, e.g. cpu or cuda [default: the best available]")

    @field_validator("embedding_dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        return check_choice("embedding dtype", value, DTYPES)

    @model_validator(mode="after")
    def _valid_format(self):
        EncoderSettings().override(**self.setting_overrides())  # raises on a format without two slots
        return self

    def setting_overrides(self) -> dict:
        """The encoder settings given explicitly (None = not given); an examples file is read here."""
        values = {name: getattr(self, name) for name in SETTING_FIELDS}
        examples = values["icl_examples"]
        if examples is not None:
            values["icl_examples"] = read_examples(examples) if isinstance(examples, Path) else check_examples(examples)
        return values

    def resolve_settings(self, model_path: str | None = None, model=None) -> EncoderSettings:
        """Saved settings of `model_path` (or the loaded `model`'s prompts), with explicit options on top."""
        saved = EncoderSettings.load(model_path) if model_path and Path(model_path).is_dir() else None
        if saved is None:
            saved = EncoderSettings.from_model(model) if model is not None else EncoderSettings()
        return saved.override(**self.setting_overrides())

    def compute_identity(self) -> str:
        """The device type and weights dtype the embeddings are computed in (e.g. `cpu:float32`): part of the
        freshness key of a stage that encodes with a model (rtune.stage.StageSpec.compute)."""
        return f"{resolve_device(self.device).split(':')[0]}:{self.torch_dtype or 'float32'}"

    def load_model(self, model: str | None):
        """The SentenceTransformer for `model` (folder, hub id, GGUF file, base + adapter folder or the
        default), loaded with the pooling, EOS, padding side and dtype of the resolved settings."""
        return load_bi_encoder(model, self.device, self.resolve_settings(resolve_model(model)))

    def build_encoder(self, model: str):
        """Load `model` (folder, hub id or the default) into an Encoder that the cache can identify."""
        resolved = resolve_model(model)
        loaded = self.load_model(model)
        return SentenceTransformerEncoder(loaded, self.resolve_settings(resolved, loaded), model_id=resolved,
                                          devices=self.encode_devices)
