"""One settings object for the whole service, read from `KB_*` environment variables."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Validated at start; `create_app(settings)` takes one so tests can pass their own."""

    model_config = SettingsConfigDict(env_prefix="KB_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="Database, file store and model cache live here.")
    database_url: str | None = Field(
        default=None, description="Any PostgreSQL with pgvector; when unset an embedded server runs under data_dir."
    )
    root_key: SecretStr | None = Field(default=None, description="An API key with every right.")
    admin_password: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    chat_model: str = "smollm2"
    embed_model: str = "minilm"
    models_file: Path | None = Field(default=None, description="JSON file listing extra chat/embedding models.")
    allow_remote_code: bool = False

    search_candidates: int = Field(
        default=50, ge=1, le=1000, description="Chunks each list (vector, full text) brings to fusion, per dataset."
    )
    hnsw_ef_search: int = Field(default=100, ge=1, le=1000, description="HNSW candidate list size of vector search.")
    rerank_model: str | None = Field(
        default=None, description="A sentence-transformers CrossEncoder (hub id in the local cache, or a folder)."
    )

    max_upload_mb: int = Field(default=100, ge=1)
    torch_threads: int = Field(default=2, ge=1)
    worker_poll_seconds: float = Field(default=5.0, gt=0)
    job_heartbeat_seconds: float = Field(default=10.0, gt=0)
    job_stale_seconds: float = Field(default=60.0, gt=0)
    job_max_attempts: int = Field(default=3, ge=1)
    job_backoff_seconds: float = Field(default=10.0, ge=0, description="First retry delay; doubles per attempt.")
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)

    cors_origins: list[str] = Field(default_factory=list)
    secure_cookies: bool = Field(default=False, description="Mark cookies Secure (set when served over HTTPS).")
    session_secret: SecretStr | None = Field(default=None, description="Signs session cookies; generated and kept under data_dir when unset.")
    log_level: str = "INFO"

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @cached_property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @cached_property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "model-cache"

    @cached_property
    def pg_dir(self) -> Path:
        return self.data_dir / "pg"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024
