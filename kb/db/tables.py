"""Tables. The schema itself is created by the Alembic migrations in `migrations/`.

Vectors of several dimensions share one `chunk.embedding` column of the untyped `vector`
type. Every dataset gets its own partial HNSW index on `(embedding::vector(dim))`
restricted to `WHERE dataset_id = <id>` (see `kb.db.store.ensure_vector_index`): each index is
typed with the dataset's dimension, no vector is ever padded, and a search inside one dataset
walks a graph holding only that dataset's vectors, so filtering never costs recall.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, REAL, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB}


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Dataset(Base):
    __tablename__ = "dataset"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, server_default="")
    embed_model: Mapped[str] = mapped_column(String(200))
    embed_dim: Mapped[int] = mapped_column(Integer)
    embed_variant: Mapped[str] = mapped_column(String(50), server_default="default")
    chunk_settings: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    search_settings: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    user_dictionary: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Collection(Base):
    __tablename__ = "collection"
    __table_args__ = (
        Index("ix_collection_dataset", "dataset_id"),
        # Re-uploading the same bytes into the same dataset is recognised, not redone.
        UniqueConstraint("dataset_id", "content_hash", name="uq_collection_dataset_hash"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(500))
    source_type: Mapped[str] = mapped_column(String(20))  # file | text | link
    source_uri: Mapped[str | None] = mapped_column(Text)
    file_path: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str | None] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger, server_default="0")
    mode: Mapped[str] = mapped_column(String(20), server_default="chunk")  # chunk | qa
    status: Mapped[str] = mapped_column(String(20), server_default="queued")
    progress: Mapped[int] = mapped_column(Integer, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    chunk_count: Mapped[int] = mapped_column(Integer, server_default="0")
    stats: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    warnings: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Chunk(Base):
    __tablename__ = "chunk"
    __table_args__ = (
        Index("ix_chunk_collection_position", "collection_id", "position"),
        Index("ix_chunk_dataset", "dataset_id"),
        Index("ix_chunk_fts", "fts", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"))
    collection_id: Mapped[int] = mapped_column(ForeignKey("collection.id", ondelete="CASCADE"))
    source_chunk_id: Mapped[int | None] = mapped_column(ForeignKey("chunk.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20), server_default="chunk")  # chunk | qa | manual
    q: Mapped[str] = mapped_column(Text)
    a: Mapped[str] = mapped_column(Text, server_default="")
    page: Mapped[int | None] = mapped_column(Integer)
    heading: Mapped[str] = mapped_column(Text, server_default="")
    token_count: Mapped[int] = mapped_column(Integer, server_default="0")
    embedding = mapped_column(Vector(), nullable=True)
    fts = mapped_column(TSVECTOR, nullable=True)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class FulltextStats(Base):
    """A dataset's searchable chunk count and mean length as of its last refresh (kb.db.store.fulltext_stats)."""

    __tablename__ = "fulltext_stats"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"), primary_key=True)
    chunks: Mapped[int] = mapped_column(BigInteger)
    mean_length: Mapped[float] = mapped_column(Float)
    blocks: Mapped[int] = mapped_column(BigInteger, server_default="0")  # fulltext_block rows after the refresh
    refreshed_at: Mapped[datetime] = _now()


class FulltextTerm(Base):
    """How many of a dataset's searchable chunks hold a common lexeme, as of its last refresh."""

    __tablename__ = "fulltext_term"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"), primary_key=True)
    lexeme: Mapped[str] = mapped_column(Text, primary_key=True)
    df: Mapped[int] = mapped_column(BigInteger)


class FulltextBlock(Base):
    """Up to 128 postings of a lexeme in a dataset, best BM25 impact first; read backwards along the key."""

    __tablename__ = "fulltext_block"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"), primary_key=True)
    lexeme: Mapped[str] = mapped_column(Text, primary_key=True)
    bound: Mapped[float] = mapped_column(REAL, primary_key=True)  # the block's largest impact when written
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    chunk_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    tfs: Mapped[list[int]] = mapped_column(ARRAY(SmallInteger))
    lengths: Mapped[list[int]] = mapped_column(ARRAY(SmallInteger))


class App(Base):
    __tablename__ = "app"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, server_default="")
    system_prompt: Mapped[str] = mapped_column(Text, server_default="")
    chat_model: Mapped[str | None] = mapped_column(String(200))
    search_settings: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    not_found_reply: Mapped[str | None] = mapped_column(Text)
    allow_general_knowledge: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # temperature, max_tokens, opening_message, suggested_questions (kb.services.apps.ChatSettings)
    chat_settings: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class AppDataset(Base):
    __tablename__ = "app_dataset"

    app_id: Mapped[int] = mapped_column(ForeignKey("app.id", ondelete="CASCADE"), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"), primary_key=True)


class ApiKey(Base):
    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(20))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    app_id: Mapped[int | None] = mapped_column(ForeignKey("app.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    token_quota: Mapped[int | None] = mapped_column(BigInteger)
    tokens_used: Mapped[int] = mapped_column(BigInteger, server_default="0")
    request_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()


class ShareLink(Base):
    """A public chat page for one app: whoever holds the token may chat, within the link's limits."""

    __tablename__ = "share_link"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("app.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token: Mapped[str] = mapped_column(String(64), unique=True)  # the published capability, like a URL
    password_hash: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)  # per visitor
    allowed_origins: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))  # who may embed it
    use_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    tokens_used: Mapped[int] = mapped_column(BigInteger, server_default="0")
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()


class Chat(Base):
    __tablename__ = "chat"
    __table_args__ = (
        Index("ix_chat_app_updated", "app_id", "updated_at"),
        Index("ix_chat_share_visitor", "share_link_id", "visitor_id"),
    )

    id: Mapped[str] = mapped_column(String(100), primary_key=True)  # client-chosen chatId, or generated
    app_id: Mapped[int] = mapped_column(ForeignKey("app.id", ondelete="CASCADE"))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_key.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(300), server_default="")
    source: Mapped[str] = mapped_column(String(20), server_default="api")  # web | api | share
    share_link_id: Mapped[int | None] = mapped_column(ForeignKey("share_link.id", ondelete="SET NULL"))
    visitor_id: Mapped[str | None] = mapped_column(String(64))  # the share-link visitor's browser
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Message(Base):
    __tablename__ = "message"
    __table_args__ = (Index("ix_message_chat", "chat_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    chat_id: Mapped[str] = mapped_column(ForeignKey("chat.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(20))
    content: Mapped[str] = mapped_column(Text)
    quotes: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    usage: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    timings: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    feedback: Mapped[int | None] = mapped_column(Integer)  # 1 up, -1 down
    feedback_comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()


class UsageLog(Base):
    __tablename__ = "usage_log"
    __table_args__ = (Index("ix_usage_created", "created_at"), Index("ix_usage_key", "api_key_id"))

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_key.id", ondelete="SET NULL"))
    endpoint: Mapped[str] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = mapped_column(Integer, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(Integer, server_default="0")
    latency_ms: Mapped[int] = mapped_column(Integer, server_default="0")
    status: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now()


class Job(Base):
    __tablename__ = "job"
    __table_args__ = (
        Index("ix_job_claim", "status", "run_after"),
        # At most one live job per (kind, collection): enqueueing twice is a no-op.
        Index(
            "uq_job_live",
            "kind",
            "collection_id",
            unique=True,
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(50))
    collection_id: Mapped[int | None] = mapped_column(ForeignKey("collection.id", ondelete="CASCADE"))
    payload: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    status: Mapped[str] = mapped_column(String(20), server_default="queued")  # queued | running | done | failed
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer, server_default="3")
    run_after: Mapped[datetime] = _now()
    locked_by: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Setting(Base):
    """Instance-wide values that every process must agree on (admin password hash, session secret)."""

    __tablename__ = "setting"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column()
    updated_at: Mapped[datetime] = _now()


class LoginAttempt(Base):
    """Failed admin logins per client address, for lockout with backoff."""

    __tablename__ = "login_attempt"

    client: Mapped[str] = mapped_column(String(100), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = _now()


class EvalSet(Base):
    """A named list of questions with expected answers, kept per dataset to measure its search and answers."""

    __tablename__ = "eval_set"
    __table_args__ = (UniqueConstraint("dataset_id", "name", name="uq_eval_set_dataset_name"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[datetime] = _now()


class EvalItem(Base):
    __tablename__ = "eval_item"
    __table_args__ = (Index("ix_eval_item_set", "set_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("eval_set.id", ondelete="CASCADE"))
    question: Mapped[str] = mapped_column(Text)
    answers: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    source: Mapped[str | None] = mapped_column(Text)  # the expected document's name, when given
    origin: Mapped[str] = mapped_column(String(20), server_default="manual")  # upload | qa | chat | manual
    status: Mapped[str] = mapped_column(String(20), server_default="active")  # active | candidate
    message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _now()


class EvalRun(Base):
    """One evaluation of a set under one configuration; kept, so runs can be compared over time."""

    __tablename__ = "eval_run"
    __table_args__ = (Index("ix_eval_run_set", "set_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("eval_set.id", ondelete="CASCADE"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"))
    config: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    status: Mapped[str] = mapped_column(String(20), server_default="queued")  # queued|running|done|failed|cancelled
    stage: Mapped[str] = mapped_column(String(50), server_default="queued")
    progress: Mapped[int] = mapped_column(Integer, server_default="0")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, server_default="false")
    totals: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    coverage: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class EvalResult(Base):
    """What one run found for one item: ranks, the quotes returned, the reply, and how long it took."""

    __tablename__ = "eval_result"
    __table_args__ = (UniqueConstraint("run_id", "item_id", name="uq_eval_result_run_item"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("eval_run.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("eval_item.id", ondelete="CASCADE"))
    answer_rank: Mapped[int | None] = mapped_column(Integer)
    source_rank: Mapped[int | None] = mapped_column(Integer)
    in_corpus: Mapped[bool] = mapped_column(Boolean, server_default="true")
    quotes: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    reply: Mapped[str | None] = mapped_column(Text)
    answer_hit: Mapped[bool | None] = mapped_column(Boolean)
    citation_hit: Mapped[bool | None] = mapped_column(Boolean)
    latency_ms: Mapped[float] = mapped_column(Float, server_default="0")


class AdminSession(Base):
    """A logged-in admin browser: its cookie names a row here, so logout and a password change end it."""

    __tablename__ = "admin_session"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the id in the cookie
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class RateBucket(Base):
    """One token bucket of a rate limit, shared by every process serving the same database."""

    __tablename__ = "rate_bucket"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    allowed: Mapped[bool] = mapped_column(Boolean)  # whether the last request that touched it was let through
    updated_at: Mapped[datetime] = _now()
