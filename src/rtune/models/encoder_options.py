"""Options shared by every stage that embeds texts (eval, dense mining): one schema, one builder."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rtune.errors import check_choice
from rtune.index.embedding_cache import DTYPES


class EncoderOptions(BaseModel):
    """How a bi-encoder is loaded and fed, and where its embeddings are cached."""

    model_config = ConfigDict(extra="forbid")

    query_prompt: str | None = Field(None, description="prefix for queries (default: the model's saved 'query' prompt)")
    query_instruction: str | None = Field(None, description="instruction put into --query-format")
    query_format: str = Field("{}{}", description="how instruction and query combine, e.g. '<instruct>{}\\n<query>{}'")
    document_prompt: str | None = Field(None, description="prefix for documents (default: the model's saved 'document' prompt)")
    embedding_dtype: str = Field("float32", description=f"stored corpus embeddings: {', '.join(DTYPES)}")
    cache: bool = Field(True, description="reuse/keep corpus and query embeddings in the embedding cache")
    cache_dir: Path | None = Field(None, description="embedding cache folder [default: $RTUNE_CACHE_DIR or ~/.cache/rtune/embeddings]")
    encode_batch_size: int = Field(64, ge=1, description="texts encoded at once")
    device: str | None = None

    @field_validator("embedding_dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        return check_choice("embedding dtype", value, DTYPES)

    @model_validator(mode="after")
    def _valid_format(self):
        self.prompt_settings()  # raises on a format without two slots
        return self

    def prompt_settings(self):
        from rtune.models.prompts import PromptSettings

        return PromptSettings(self.query_prompt, self.document_prompt, self.query_instruction, self.query_format)

    def build_encoder(self, model: str):
        """Load `model` (folder, hub id or the default) into an Encoder that the cache can identify."""
        from rtune.index.encoder import SentenceTransformerEncoder
        from rtune.models.loading import load_bi_encoder, resolve_model

        return SentenceTransformerEncoder(load_bi_encoder(model, self.device), prompts=self.prompt_settings(),
                                          model_id=resolve_model(model))

    def build_cache(self):
        from rtune.index.embedding_cache import EmbeddingCache

        return EmbeddingCache(self.cache_dir) if self.cache else None
