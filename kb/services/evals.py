"""Evaluation sets: create them per dataset and fill them from a file, the dataset's Q/A pairs, rated chat
answers (as candidates to review) or by hand."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError

from kb.db.store import chats as chat_store
from kb.db.store import evals as eval_store
from kb.db.store.evals import EvalItemRecord, EvalSetRecord, NewItem
from kb.errors import BadRequest, Conflict, PayloadTooLarge, found
from kb.ingest.eval_file import LineError, check_item, parse_eval_file
from kb.runtime import Runtime
from kb.services.datasets import get_dataset

MAX_FILE_BYTES = 5 * 2**20
MAX_NAME_CHARS = 200
MAX_SAMPLE = 1000
NOT_IN_DOCUMENTS = "this answer is not in any document"


@dataclass(frozen=True)
class ImportReport:
    """What an upload added, the lines it refused and why, and the added lines whose answers no document holds."""

    added: int
    errors: list[LineError] = field(default_factory=list)
    not_in_documents: list[LineError] = field(default_factory=list)


def _require_set(session, set_id: int) -> EvalSetRecord:
    return found(eval_store.get_set(session, set_id), "evaluation set", set_id, code="eval_set_not_found")


def get_set(rt: Runtime, set_id: int) -> EvalSetRecord:
    with rt.db.session() as session:
        return _require_set(session, set_id)


def list_sets(rt: Runtime, dataset_id: int) -> list[EvalSetRecord]:
    get_dataset(rt, dataset_id)
    with rt.db.session() as session:
        return eval_store.list_sets(session, dataset_id)


def create_set(rt: Runtime, dataset_id: int, name: str, description: str = "") -> EvalSetRecord:
    """A new, empty set over the dataset; the name is unique within the dataset."""
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise BadRequest(f"give the set a name of 1 to {MAX_NAME_CHARS} characters", code="invalid_name")
    get_dataset(rt, dataset_id)
    with rt.db.session() as session:
        if eval_store.find_set(session, dataset_id, name) is not None:
            raise Conflict(f"this dataset already has a set named '{name}'", code="name_taken")
        try:
            record = eval_store.add_set(session, dataset_id, name, (description or "").strip())
            session.commit()
        except IntegrityError as exc:
            raise Conflict(f"this dataset already has a set named '{name}'", code="name_taken") from exc
    return record


def delete_set(rt: Runtime, set_id: int) -> None:
    """The set, its items and its runs."""
    with rt.db.session() as session:
        _require_set(session, set_id)
        eval_store.delete_set(session, set_id)
        session.commit()


def _missing_answers(session, dataset_id: int, items: list[NewItem]) -> list[int]:
    """Indexes of the items none of whose answers occur in any chunk of the dataset."""
    present = eval_store.answers_in_corpus(session, dataset_id, [a for item in items for a in item.answers])
    return [index for index, item in enumerate(items) if not present.intersection(item.answers)]


def import_items(rt: Runtime, set_id: int, filename: str, content: bytes) -> ImportReport:
    """Add a JSONL or CSV file's good lines to the set; bad lines are reported by number and skipped."""
    if len(content) > MAX_FILE_BYTES:
        raise PayloadTooLarge(f"the file is {len(content):,} bytes; an evaluation set file may be {MAX_FILE_BYTES:,}")
    parsed = parse_eval_file(filename or "", content)
    with rt.db.session() as session:
        target = _require_set(session, set_id)
        eval_store.add_items(session, set_id, parsed.items, origin="upload")
        missing = _missing_answers(session, target.dataset_id, parsed.items)
        session.commit()
    flagged = [LineError(parsed.lines[index], NOT_IN_DOCUMENTS) for index in missing]
    return ImportReport(len(parsed.items), parsed.errors, flagged)


def add_item(rt: Runtime, set_id: int, question: str, answers: list[str], source: str | None = None) -> EvalItemRecord:
    """One item typed in by hand; refused with a reason when it has no question or no expected answer."""
    try:
        draft = check_item(question, answers, source)
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_item") from exc
    with rt.db.session() as session:
        _require_set(session, set_id)
        (item_id,) = eval_store.add_items(session, set_id, [draft], origin="manual")
        session.commit()
        return eval_store.get_item(session, item_id)


def sample_qa_pairs(rt: Runtime, set_id: int, count: int, seed: int | None = None) -> int:
    """Add up to `count` of the dataset's Q/A pairs drawn at random; returns how many were added."""
    if not 1 <= count <= MAX_SAMPLE:
        raise BadRequest(f"draw between 1 and {MAX_SAMPLE} pairs, not {count}", code="invalid_count")
    with rt.db.session() as session:
        target = _require_set(session, set_id)
        pairs = eval_store.random_qa_pairs(
            session, target.dataset_id, count, random.randrange(2**31) if seed is None else seed
        )
        if not pairs:
            raise BadRequest(
                "this dataset has no Q/A pairs: add documents in Q/A split mode, or pairs by hand", code="no_qa_pairs"
            )
        eval_store.add_items(session, set_id, pairs, origin="qa")
        session.commit()
    return len(pairs)


def collect_rated_answers(rt: Runtime, set_id: int) -> int:
    """Rated chat answers over the set's dataset become candidate items (the question; the answer to be typed in
    review, since a reply's wording is not what a passage contains); returns how many were added."""
    with rt.db.session() as session:
        target = _require_set(session, set_id)
        rated = eval_store.rated_answers(session, target.dataset_id)
        for answer in rated:
            draft = NewItem(answer.question.strip()[:2000], [])
            eval_store.add_items(
                session, set_id, [draft], origin="chat", status="candidate", message_id=answer.message_id
            )
        session.commit()
    return len(rated)


@dataclass(frozen=True)
class Candidate:
    """A candidate item with the rated reply it came from."""

    item: EvalItemRecord
    reply: str | None
    feedback: int | None
    comment: str | None


def list_items(
    rt: Runtime, set_id: int, *, status: str = "active", offset: int = 0, limit: int = 50
) -> tuple[list[EvalItemRecord], int]:
    with rt.db.session() as session:
        _require_set(session, set_id)
        return eval_store.list_items(session, set_id, status=status, offset=offset, limit=limit)


def list_candidates(rt: Runtime, set_id: int, limit: int = 50) -> list[Candidate]:
    """Candidates waiting for review, with the reply and rating that brought each in."""
    items, _ = list_items(rt, set_id, status="candidate", limit=limit)
    with rt.db.session() as session:
        messages = {i.id: chat_store.get_message(session, i.message_id) if i.message_id else None for i in items}
    return [
        Candidate(i, m.content if m else None, m.feedback if m else None, m.feedback_comment if m else None)
        for i, m in ((i, messages[i.id]) for i in items)
    ]


def _require_item(session, item_id: int) -> EvalItemRecord:
    return found(eval_store.get_item(session, item_id), "evaluation item", item_id, code="eval_item_not_found")


def get_item(rt: Runtime, item_id: int) -> EvalItemRecord:
    with rt.db.session() as session:
        return _require_item(session, item_id)


def approve_candidate(rt: Runtime, item_id: int, answers: list[str], source: str | None = None) -> EvalItemRecord:
    """A reviewed candidate joins the set once it has an expected answer."""
    with rt.db.session() as session:
        item = _require_item(session, item_id)
        try:
            draft = check_item(item.question, answers, source)
        except ValueError as exc:
            raise BadRequest(str(exc), code="invalid_item") from exc
        eval_store.update_item(session, item_id, answers=draft.answers, source=draft.source, status="active")
        session.commit()
        return eval_store.get_item(session, item_id)


def delete_item(rt: Runtime, item_id: int) -> EvalItemRecord:
    """Remove an item (or discard a candidate); returns it as it was."""
    with rt.db.session() as session:
        item = _require_item(session, item_id)
        eval_store.delete_item(session, item_id)
        session.commit()
    return item
