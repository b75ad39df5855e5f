"""Evaluation sets and their items; where items come from (QA pairs, rated chat answers); answers in the corpus."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from kb.db.store.records import record_of
from kb.db.tables import EvalItem, EvalSet


@dataclass(frozen=True)
class NewItem:
    """An item to add: the question, the strings a right passage contains, and optionally its document."""

    question: str
    answers: list[str]
    source: str | None = None


@dataclass(frozen=True)
class EvalSetRecord:
    id: int
    dataset_id: int
    name: str
    description: str
    created_at: datetime
    item_count: int = 0
    candidate_count: int = 0


@dataclass(frozen=True)
class EvalItemRecord:
    id: int
    set_id: int
    question: str
    answers: list[str]
    source: str | None
    origin: str
    status: str
    message_id: int | None
    created_at: datetime


@dataclass(frozen=True)
class RatedAnswer:
    """An answer someone rated in a chat, with the question it answered."""

    message_id: int
    question: str
    reply: str
    feedback: int
    comment: str | None


def _set(row: EvalSet, items: int = 0, candidates: int = 0) -> EvalSetRecord:
    return record_of(EvalSetRecord, row, item_count=items, candidate_count=candidates)


def _item(row: EvalItem) -> EvalItemRecord:
    return record_of(EvalItemRecord, row)


def _counted():
    active = func.count().filter(EvalItem.status == "active")
    candidate = func.count().filter(EvalItem.status == "candidate")
    counts = (
        select(EvalItem.set_id, active.label("active_items"), candidate.label("candidates"))
        .group_by(EvalItem.set_id)
        .subquery()
    )
    query = select(EvalSet, func.coalesce(counts.c.active_items, 0), func.coalesce(counts.c.candidates, 0))
    return query.outerjoin(counts, counts.c.set_id == EvalSet.id)


def add_set(session: Session, dataset_id: int, name: str, description: str = "") -> EvalSetRecord:
    row = EvalSet(dataset_id=dataset_id, name=name, description=description)
    session.add(row)
    session.flush()
    session.refresh(row)
    return _set(row)


def get_set(session: Session, set_id: int) -> EvalSetRecord | None:
    found = session.execute(_counted().where(EvalSet.id == set_id)).first()
    return _set(*found) if found else None


def find_set(session: Session, dataset_id: int, name: str) -> EvalSetRecord | None:
    found = session.execute(_counted().where(EvalSet.dataset_id == dataset_id, EvalSet.name == name)).first()
    return _set(*found) if found else None


def list_sets(session: Session, dataset_id: int) -> list[EvalSetRecord]:
    rows = session.execute(_counted().where(EvalSet.dataset_id == dataset_id).order_by(EvalSet.id)).all()
    return [_set(*row) for row in rows]


def delete_set(session: Session, set_id: int) -> bool:
    return session.execute(delete(EvalSet).where(EvalSet.id == set_id)).rowcount > 0


def add_items(
    session: Session,
    set_id: int,
    drafts: Sequence[NewItem],
    *,
    origin: str,
    status: str = "active",
    message_id: int | None = None,
) -> list[int]:
    """Insert the drafts in order; returns their ids."""
    rows = [
        EvalItem(
            set_id=set_id,
            question=d.question,
            answers=list(d.answers),
            source=d.source,
            origin=origin,
            status=status,
            message_id=message_id,
        )
        for d in drafts
    ]
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows]


def list_items(
    session: Session, set_id: int, *, status: str | None = None, offset: int = 0, limit: int | None = None
) -> tuple[list[EvalItemRecord], int]:
    """A set's items in the order they were added (optionally only one status), and how many there are."""
    query = select(EvalItem).where(EvalItem.set_id == set_id)
    if status is not None:
        query = query.where(EvalItem.status == status)
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = session.scalars(query.order_by(EvalItem.id).offset(offset).limit(limit))
    return [_item(row) for row in rows], total


def get_item(session: Session, item_id: int) -> EvalItemRecord | None:
    row = session.get(EvalItem, item_id)
    return _item(row) if row else None


def update_item(session: Session, item_id: int, **values) -> bool:
    return session.execute(update(EvalItem).where(EvalItem.id == item_id).values(**values)).rowcount > 0


def delete_item(session: Session, item_id: int) -> bool:
    return session.execute(delete(EvalItem).where(EvalItem.id == item_id)).rowcount > 0


def answers_in_corpus(session: Session, dataset_id: int, answers: Sequence[str]) -> set[str]:
    """Which of the strings occur, as written, in some chunk of the dataset (its text and Q/A answer)."""
    wanted = sorted({a for a in answers if a})
    if not wanted:
        return set()
    rows = session.execute(
        text(
            """
            SELECT w.answer FROM unnest(CAST(:answers AS text[])) AS w(answer)
            WHERE EXISTS (
                SELECT 1 FROM chunk c
                WHERE c.dataset_id = :dataset AND strpos(c.q || E'\\n' || c.a, w.answer) > 0
            )
            """
        ),
        {"answers": wanted, "dataset": dataset_id},
    )
    return {row.answer for row in rows}


def random_qa_pairs(session: Session, dataset_id: int, count: int, seed: int) -> list[NewItem]:
    """`count` of the dataset's generated or manual Q/A pairs in a random order fixed by `seed`."""
    rows = session.execute(
        text(
            """
            SELECT c.q, c.a, col.name AS source FROM chunk c JOIN collection col ON col.id = c.collection_id
            WHERE c.dataset_id = :dataset AND c.kind IN ('qa', 'manual') AND c.a <> ''
            ORDER BY md5(c.id::text || ':' || :seed) LIMIT :count
            """
        ),
        {"dataset": dataset_id, "seed": str(seed), "count": count},
    )
    return [NewItem(row.q.strip(), [row.a.strip()], row.source) for row in rows]


def rated_answers(session: Session, dataset_id: int, limit: int = 200) -> list[RatedAnswer]:
    """Rated answers of chats in apps that search this dataset, newest first, not yet taken into a set."""
    rows = session.execute(
        text(
            """
            SELECT m.id, m.content, m.feedback, m.feedback_comment, q.content AS question
            FROM message m
            JOIN chat ch ON ch.id = m.chat_id
            JOIN app_dataset ad ON ad.app_id = ch.app_id AND ad.dataset_id = :dataset
            JOIN LATERAL (
                SELECT u.content FROM message u
                WHERE u.chat_id = m.chat_id AND u.role = 'user' AND u.id < m.id ORDER BY u.id DESC LIMIT 1
            ) q ON true
            WHERE m.role = 'assistant' AND m.feedback IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM eval_item i WHERE i.message_id = m.id)
            ORDER BY m.id DESC LIMIT :limit
            """
        ),
        {"dataset": dataset_id, "limit": limit},
    )
    return [RatedAnswer(r.id, r.question, r.content, r.feedback, r.feedback_comment) for r in rows]
