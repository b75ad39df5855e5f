"""Evaluation runs: start one (a background job), follow it, cancel it, and compare two side by side."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from kb.db import queue
from kb.db.store import eval_runs as run_store
from kb.db.store import evals as eval_store
from kb.db.store.eval_runs import EvalResultRecord, EvalRunRecord
from kb.errors import BadRequest, Conflict, found
from kb.rag.retrieval import MODES
from kb.rag.scoring import TOP, Difference, paired_bootstrap, reciprocal_rank
from kb.runtime import Runtime
from kb.services.apps import get_app
from kb.services.evals import create_set, get_set, import_items
from kb.services.search import MAX_LIMIT

EVAL_RUN = "eval_run"  # the job kind
EVAL_ATTEMPTS = 2  # a run whose worker died is tried once more; a run that failed on its own is not


@dataclass(frozen=True)
class RunConfig:
    """What a run evaluates: search with these settings, or (with `app_id`) the app's whole answer."""

    mode: str = "hybrid"
    limit: int = TOP
    min_score: float = 0.0
    rerank: bool = False
    app_id: int | None = None

    def check(self) -> RunConfig:
        if self.mode not in MODES:
            raise BadRequest(f"mode must be one of {', '.join(MODES)}, not '{self.mode}'", code="invalid_mode")
        if not TOP <= self.limit <= MAX_LIMIT:
            raise BadRequest(f"limit must be between {TOP} and {MAX_LIMIT}, not {self.limit}", code="invalid_limit")
        if not 0.0 <= self.min_score <= 1.0:
            raise BadRequest(f"min_score must be between 0 and 1, not {self.min_score}", code="invalid_min_score")
        return self


def _require_run(session, run_id: int) -> EvalRunRecord:
    return found(run_store.get_run(session, run_id), "evaluation run", run_id, code="eval_run_not_found")


def start_run(rt: Runtime, set_id: int, config: RunConfig) -> EvalRunRecord:
    """Queue a run of the set's items under `config`; the worker carries it out and records its progress."""
    config = config.check()
    if config.app_id is not None:
        get_app(rt, config.app_id)
    with rt.db.session() as session:
        target = found(eval_store.get_set(session, set_id), "evaluation set", set_id, code="eval_set_not_found")
        if target.item_count == 0:
            raise Conflict("this set has no questions yet: upload a file or add some first", code="empty_set")
        run = run_store.add_run(session, set_id, target.dataset_id, asdict(config))
        queue.enqueue(session, EVAL_RUN, collection_id=None, payload={"run_id": run.id}, max_attempts=EVAL_ATTEMPTS)
        session.commit()
        return run_store.get_run(session, run.id)


def run_job_id(rt: Runtime, run_id: int) -> int | None:
    """The queue job of a run (a command line that carries out its own run claims exactly that job)."""
    with rt.db.session() as session:
        return run_store.job_of_run(session, run_id)


def find_or_import_set(rt: Runtime, dataset_id: int, name: str, filename: str, content: bytes):
    """The set of this name, or a new one filled from the file (with its report); for `kb eval run --set FILE`."""
    with rt.db.session() as session:
        found = eval_store.find_set(session, dataset_id, name)
    if found is not None:
        return found, None
    created = create_set(rt, dataset_id, name)
    report = import_items(rt, created.id, filename, content)
    return get_set(rt, created.id), report


def get_run(rt: Runtime, run_id: int) -> EvalRunRecord:
    with rt.db.session() as session:
        return _require_run(session, run_id)


def list_runs(rt: Runtime, *, set_id: int | None = None, dataset_id: int | None = None) -> list[EvalRunRecord]:
    with rt.db.session() as session:
        return run_store.list_runs(session, set_id=set_id, dataset_id=dataset_id)


def latest_run(rt: Runtime, dataset_id: int) -> EvalRunRecord | None:
    """The dataset's newest finished run, for "last run: hit@5 0.94"."""
    with rt.db.session() as session:
        return run_store.latest_finished_run(session, dataset_id)


def run_results(rt: Runtime, run_id: int) -> list[EvalResultRecord]:
    with rt.db.session() as session:
        _require_run(session, run_id)
        return run_store.list_results(session, run_id)


def cancel_run(rt: Runtime, run_id: int) -> EvalRunRecord:
    """Stop a queued or running run (a running one stops after its current question, keeping what it measured)."""
    with rt.db.session() as session:
        run = _require_run(session, run_id)
        if run.finished:
            raise Conflict(f"run {run_id} has already finished ({run.status})", code="run_finished")
        run_store.request_cancel(session, run_id)
        session.commit()
        return run_store.get_run(session, run_id)


@dataclass(frozen=True)
class ChangedItem:
    """A question one run found and the other did not (or found higher), with the quotes each returned."""

    item_id: int
    question: str
    answers: list[str]
    rank_a: int | None
    rank_b: int | None
    quotes_a: list[dict]
    quotes_b: list[dict]


@dataclass(frozen=True)
class Comparison:
    a: EvalRunRecord
    b: EvalRunRecord
    paired: int
    differences: dict[str, Difference] = field(default_factory=dict)
    better: list[ChangedItem] = field(default_factory=list)
    worse: list[ChangedItem] = field(default_factory=list)


MEASURES = {
    "hit@1": lambda r: 1.0 if r.answer_rank == 1 else 0.0,
    "hit@5": lambda r: 1.0 if r.answer_rank is not None and r.answer_rank <= TOP else 0.0,
    "mrr": lambda r: reciprocal_rank(r),
}


def compare_runs(rt: Runtime, run_a: int, run_b: int) -> Comparison:
    """B against A over the items both measured and whose answers exist in the documents in both."""
    with rt.db.session() as session:
        a, b = _require_run(session, run_a), _require_run(session, run_b)
        if a.set_id != b.set_id:
            raise BadRequest("compare two runs of the same evaluation set", code="different_sets")
        results_a = {r.item_id: r for r in run_store.list_results(session, run_a)}
        results_b = {r.item_id: r for r in run_store.list_results(session, run_b)}
    shared = [i for i in results_a if i in results_b and results_a[i].in_corpus and results_b[i].in_corpus]
    differences = {
        name: paired_bootstrap([measure(results_a[i]) for i in shared], [measure(results_b[i]) for i in shared])
        for name, measure in MEASURES.items()
    }
    better, worse = [], []
    for item_id in shared:
        ra, rb = results_a[item_id], results_b[item_id]
        gain = reciprocal_rank(rb) - reciprocal_rank(ra)
        if gain:
            changed = ChangedItem(
                item_id, ra.question, ra.answers, ra.answer_rank, rb.answer_rank, ra.quotes, rb.quotes
            )
            (better if gain > 0 else worse).append(changed)
    return Comparison(a, b, len(shared), differences, better, worse)
