"""Request and response shapes of the JSON API (datasets, collections, chunks)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Mode = Literal["chunk", "qa"]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChunkSettings(_Input):
    """How a dataset's documents are cut; `max_tokens` is capped at what its embedder reads."""

    max_tokens: int | None = Field(
        default=None, ge=16, le=8192, description="Chunk size in the embedder's tokens; default: the embedder's own."
    )
    overlap: float = Field(default=0.15, ge=0.0, le=0.5)
    separators: list[Annotated[str, StringConstraints(min_length=1, max_length=20)]] | None = Field(
        default=None, max_length=20
    )
    mode: Mode = "chunk"
    qa_max_pairs: int = Field(default=5, ge=1, le=20)


class DatasetCreate(_Input):
    name: Name
    description: str = Field(default="", max_length=5000)
    embed_model: str | None = Field(default=None, description="A configured embedding model; default KB_EMBED_MODEL.")
    embed_variant: str | None = Field(
        default=None, description="How the model runs (fp32, bf16, onnx-fp32, onnx-int8); default: the model's."
    )
    chunk_settings: ChunkSettings = Field(default_factory=ChunkSettings)
    search_settings: dict[str, Any] = Field(default_factory=dict)


class DatasetUpdate(_Input):
    name: Name | None = None
    description: str | None = Field(default=None, max_length=5000)
    embed_model: str | None = None
    embed_variant: str | None = Field(
        default=None, description="Refused unless unchanged: re-embed the dataset instead."
    )
    chunk_settings: ChunkSettings | None = None
    search_settings: dict[str, Any] | None = None


class DatasetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    embed_model: str
    embed_dim: int
    embed_variant: str
    chunk_settings: dict[str, Any]
    search_settings: dict[str, Any]
    collection_count: int
    chunk_count: int
    status_counts: dict[str, int]
    created_at: datetime
    updated_at: datetime


class DatasetReembed(_Input):
    embed_model: str | None = Field(
        default=None, description="The embedding model to switch to; default: the dataset's own model."
    )
    embed_variant: str | None = Field(
        default=None, description="The variant to re-embed with; default: the model's default."
    )


class ReembedPublic(BaseModel):
    """A dataset's re-embedding job: where it stands, and what it switches to."""

    job_id: int
    dataset_id: int
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    stage: str = Field(description="waiting, loading the model, embedding, switching or finished")
    percent: int = Field(ge=0, le=100)
    embed_model: str
    embed_variant: str | None
    error: str | None = None


class DatasetList(BaseModel):
    items: list[DatasetPublic]


class TextSource(_Input):
    type: Literal["text"]
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    text: str = Field(min_length=1)
    mode: Mode | None = None


class LinkSource(_Input):
    type: Literal["link"]
    url: str = Field(min_length=1, max_length=4000)
    name: str | None = Field(default=None, max_length=500)
    mode: Mode | None = None


CollectionCreate = Annotated[TextSource | LinkSource, Field(discriminator="type")]


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    status: str
    attempts: int
    max_attempts: int
    run_after: datetime
    last_error: str | None


class CollectionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    dataset_id: int
    name: str
    source_type: str
    source_uri: str | None
    content_type: str | None
    size_bytes: int
    mode: str
    status: str
    progress: int
    chunk_count: int
    error: str | None
    stats: dict[str, Any]
    warnings: list[str]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    job: JobPublic | None = None


class CollectionPage(BaseModel):
    items: list[CollectionPublic]
    total: int
    offset: int
    limit: int


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None
    status: int


class UploadOutcome(BaseModel):
    """One source of an upload request: accepted (with its collection) or refused (with the reason)."""

    name: str
    id: int | None = None
    status: str | None = None
    duplicate: bool = False
    error: ErrorDetail | None = None


class UploadResult(BaseModel):
    id: int | None = Field(description="The first accepted collection's id (the only one for a single source).")
    items: list[UploadOutcome]


class ChunkPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    dataset_id: int
    collection_id: int
    position: int
    kind: str
    q: str
    a: str
    page: int | None
    heading: str
    token_count: int
    source_chunk_id: int | None
    created_at: datetime
    updated_at: datetime


class ChunkPage(BaseModel):
    items: list[ChunkPublic]
    total: int
    offset: int
    limit: int


class ChunkCreate(_Input):
    q: str = Field(min_length=1, max_length=20000)
    a: str = Field(default="", max_length=20000)

    @field_validator("q")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class ChunkUpdate(_Input):
    q: str | None = Field(default=None, min_length=1, max_length=20000)
    a: str | None = Field(default=None, max_length=20000)


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    app_id: int | None = Field(default=None, description="Limit the key to this app; omit for a key to everything.")
    expires_at: datetime | None = Field(default=None, description="When the key stops working (UTC if no zone).")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    token_quota: int | None = Field(default=None, ge=1, description="Prompt + completion tokens the key may use.")


class QuotePublic(BaseModel):
    chunk_id: int
    collection_id: int
    dataset_id: int
    source: str
    q: str
    a: str
    score: float
    page: int | None
    heading: str
    sources: list[str]
    ranks: dict[str, int]
    scores: dict[str, float]

    @classmethod
    def of(cls, quote) -> QuotePublic:
        """From a `kb.rag.retrieval.Quote`."""
        return cls(
            chunk_id=quote.chunk_id,
            collection_id=quote.collection_id,
            dataset_id=quote.dataset_id,
            source=quote.source,
            q=quote.q,
            a=quote.a,
            score=round(quote.score, 6),
            page=quote.page,
            heading=quote.heading,
            sources=list(quote.sources),
            ranks=quote.ranks,
            scores={name: round(value, 6) for name, value in quote.scores.items()},
        )


class SearchResponse(BaseModel):
    results: list[QuotePublic]
    mode: str
    timings: dict[str, float]
    warnings: list[str]

    @classmethod
    def of(cls, result) -> SearchResponse:
        """From a `kb.services.search.SearchResult`."""
        return cls(
            results=[QuotePublic.of(q) for q in result.quotes],
            mode=result.mode,
            timings=result.timings,
            warnings=result.warnings,
        )
