"""One settings object for the whole service, read from `KB_*` environment variables."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Validated at start; `create_app(settings)` takes one so tests can pass their own."""

    model_config = SettingsConfigDict(env_prefix="KB_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path("data"), description="Database, file store and files derived from models (ONNX exports) live here."
    )
    database_url: str | None = Field(
        default=None, description="Any PostgreSQL with pgvector; when unset an embedded server runs under data_dir."
    )
    pg_shared_buffers_mb: int = Field(
        default=0,
        ge=0,
        le=1_048_576,
        description="The embedded PostgreSQL's shared_buffers in MB, applied when it starts; 0 = a quarter of "
        "the machine's memory (at most 8 GB). Search reads the HNSW index and the postings through it.",
    )
    root_key: SecretStr | None = Field(default=None, description="An API key with every right.")
    admin_password: SecretStr | None = Field(
        default=None,
        description="The admin password; a changed value wins at the next start and ends older sessions. "
        "When unset, the first visit to /admin asks for one.",
    )
    host: str = Field(default="127.0.0.1", description="Where `kb serve` listens.")
    port: int = Field(default=8000, ge=1, le=65535, description="The port `kb serve` listens on.")

    chat_model: str = Field(
        default="qwen2.5-coder-1.5b",
        description="The default chat model (a name from the model list): Qwen2.5-Coder-1.5B-Instruct on llama.cpp; "
        "`qwen2.5-coder-0.5b` answers faster and worse, `smollm2` (135M) is for tests.",
    )
    embed_model: str = Field(
        default="e5-small",
        description="The embedding model of new datasets (a name from the model list); existing datasets keep theirs.",
    )
    models_dir: Path | None = Field(
        default=None,
        description="Model files shared by every data dir on this machine (the catalog's GGUF files, assembled or "
        "downloaded once and verified by sha256); unset: `$XDG_CACHE_HOME/kb/models`, else `~/.cache/kb/models`.",
    )
    models_file: Path | None = Field(
        default=None,
        description="A JSON file listing more chat and embedding models (local paths, Hugging Face ids, `.gguf` files, "
        "remote OpenAI-compatible providers).",
    )
    allow_remote_code: bool = Field(
        default=False, description="Let models from the model list run code shipped with them (trust_remote_code)."
    )
    max_message_chars: int = Field(
        default=8000,
        ge=100,
        description="Longest message a caller may send in a chat (each message, history included); longer ones are "
        "refused with 400 before any model reads them. A question to an app must also fit the search limit "
        "(2000 characters).",
    )
    answer_max_tokens: int = Field(
        default=512, ge=16, description="Room kept for an app's answer when the request names none."
    )

    search_candidates: int = Field(
        default=50, ge=1, le=1000, description="Chunks each list (vector, full text) brings to fusion, per dataset."
    )
    search_concurrency: int = Field(
        default=0,
        ge=0,
        le=256,
        description="Searches computed at once per process (more wait their turn); 0 = one more than the number "
        "of CPU cores. While answers are generated, searches get the cores they leave (at least one).",
    )
    search_hold_ms: float = Field(
        default=3000,
        ge=0,
        le=60_000,
        description="While an answer reads its prompt (until its first token), other searches wait, each at most "
        "this long: the prompt then gets every core. 0 = searches only step back to the cores answers leave.",
    )
    fulltext_pruning: bool = Field(
        default=True,
        description="Find full-text candidates among each query word's best postings (kb.db.store.postings) and "
        "score them exactly; off scores every chunk holding a query word (exact BM25), a baseline for benchmarks.",
    )
    hnsw_ef_search: int = Field(default=100, ge=1, le=1000, description="HNSW candidate list size of vector search.")
    rerank_model: str | None = Field(
        default=None, description="A sentence-transformers CrossEncoder (hub id in the local cache, or a folder)."
    )

    max_upload_mb: int = Field(default=100, ge=1, description="Upload size limit, in MB.")
    max_request_kb: int = Field(
        default=1024,
        ge=64,
        description="Largest request body of every route but uploads (JSON, forms), in kB; a larger one is "
        "refused with 413 before anything reads it, credentials or not.",
    )
    link_allow_private: bool = Field(
        default=False,
        description="Let link sources reach private, loopback and link-local addresses (an intranet wiki); "
        "off by default so a user cannot make the server fetch its own network.",
    )
    link_timeout_seconds: float = Field(
        default=120.0, gt=0, description="Longest a link source's whole download may take, redirects included."
    )
    model_cache: Path | None = Field(
        default=None,
        description="Where models built from the installed files (ONNX exports, the e5 folder) are kept; "
        "default `model-cache` under data_dir. Several data dirs may share one: builds take turns on a file lock.",
    )
    torch_threads: int = Field(default=2, ge=1, description="CPU threads each model may use.")
    worker_poll_seconds: float = Field(
        default=5.0, gt=0, description="How often an idle worker looks for jobs when no notification arrives."
    )
    worker_jobs: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Sources one worker processes at once: with 2, one is read, chunked and stored while another "
        "is embedded, which keeps both cores busy (the embedder itself runs at most torch_threads batches at once).",
    )
    job_heartbeat_seconds: float = Field(default=10.0, gt=0, description="How often a running job says it is alive.")
    job_stale_seconds: float = Field(
        default=60.0, gt=0, description="A job silent this long is taken back from its worker and queued again."
    )
    job_timeout_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="Longest one attempt at a source may run; past it the job is stopped, its slot freed, and it "
        "fails with the reason (retried with back-off while attempts are left).",
    )
    job_max_attempts: int = Field(default=3, ge=1, description="Tries of a failing job before it is given up.")
    job_backoff_seconds: float = Field(default=10.0, ge=0, description="First retry delay; doubles per attempt.")
    shutdown_grace_seconds: float = Field(
        default=30.0, ge=0, description="On SIGTERM, how long running jobs may finish before they are given back."
    )

    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins (a JSON list) whose pages may call the API with an API key; closed when empty.",
    )
    secure_cookies: bool | None = Field(
        default=None,
        description="Mark cookies Secure (sent over HTTPS only). Unset: Secure unless kb listens on loopback only, "
        "so an exposed server never sends its session over plain HTTP; set false to serve plain HTTP on a network.",
    )
    session_secret: SecretStr | None = Field(
        default=None, description="Signs session cookies; generated once and kept in the database when unset."
    )
    session_hours: float = Field(default=12, gt=0, description="How long an admin login lasts.")
    login_max_failures: int = Field(default=5, ge=1, description="Failed logins from one address before a lockout.")
    login_lockout_seconds: float = Field(
        default=30, gt=0, description="First lockout; each further failure doubles it."
    )
    rate_limit_chat_per_minute: int = Field(
        default=60,
        ge=0,
        description="Chat requests per API key (or session) per minute, across all processes; 0 turns it off.",
    )
    rate_limit_chat_per_ip_per_minute: int = Field(
        default=120,
        ge=0,
        description="Chat requests per client address per minute, across all processes; 0 turns it off.",
    )
    rate_limit_login_per_minute: int = Field(
        default=20,
        ge=0,
        description="Login attempts per client address per minute, across all processes; 0 turns it off.",
    )
    usage_retention_days: float = Field(
        default=90, gt=0, description="Usage log rows older than this are deleted by the worker's housekeeping."
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @cached_property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @cached_property
    def model_cache_dir(self) -> Path:
        return self.model_cache.expanduser().resolve() if self.model_cache else self.data_dir / "model-cache"

    @cached_property
    def shared_models_dir(self) -> Path:
        if self.models_dir is not None:
            return self.models_dir.expanduser().resolve()
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "kb" / "models"

    @cached_property
    def pg_dir(self) -> Path:
        return self.data_dir / "pg"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def cookies_secure(self) -> bool:
        """`secure_cookies`, or when unset: True unless `host` is a loopback address."""
        return self.secure_cookies if self.secure_cookies is not None else not self.loopback_only

    @property
    def loopback_only(self) -> bool:
        """Whether `host` is a loopback address, so only this machine can reach kb."""
        return self.host in ("localhost", "::1") or self.host.startswith("127.")

    @property
    def max_request_bytes(self) -> int:
        return self.max_request_kb * 1024


def settings_table() -> str:
    """The README's settings table, made from the fields above (the README must match it: a test checks)."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "unset" if default is None else f"`./{default}`" if isinstance(default, Path) else f"`{default}`"
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `KB_{name.upper()}` | {shown} | {description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
