"""Answer one question from quotes: rewrite a follow-up, retrieve, prompt, stream, and report citations.

`answer_question` does the work that can fail cleanly (rewriting, retrieval, prompt fitting) before it
returns; the stream it returns yields `StreamDelta`s and ends with one `Answer`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from kb.ml.types import ChatModel, Completion, GenerationCancelled, GenerationParams, StreamDelta, check_params
from kb.rag.citations import CitationChecker, check_citations, extract_citations, source_of_copy
from kb.rag.focus import focus_quotes
from kb.rag.prompting import PromptQuote, QuotePrompt, build_quote_prompt, not_found_reply
from kb.rag.rewrite import rewrite_question


@dataclass(frozen=True)
class RetrievedQuote:
    """One search result as answering needs it."""

    chunk_id: int
    collection_id: int
    source: str
    score: float
    q: str
    a: str = ""
    page: int | None = None
    dataset_id: int | None = None

    @property
    def text(self) -> str:
        return f"{self.q}\n{self.a}" if self.a else self.q


Retriever = Callable[[str], Sequence[RetrievedQuote]]
STOPPED = "stopped"  # an answer's finish_reason when its generation was cancelled midway


@dataclass(frozen=True)
class AnswerConfig:
    """An app's answering settings."""

    system_prompt: str = ""
    quote_budget: int = 1200
    not_found_reply: str | None = None  # None: the built-in reply in the question's language
    allow_general_knowledge: bool = False
    answer_tokens: int = 512
    max_history_turns: int = 4
    rewrite_follow_ups: bool = True
    cite_copied_quote: bool = True  # an uncited answer copied from one quote gets its [n] (see kb.rag.citations)
    check_citations: bool = True  # a citation whose quote does not hold its sentence points to the one that does
    quote_sentences: int | None = None  # show only this many best-matching sentences of the quotes (see kb.rag.focus)
    lead_sentences: int | None = None  # with quote_sentences: how many sentences the best-ranked quote keeps
    rules_in_system: bool = True  # the answering rules in the system message, else in the user turn
    whole_answer: bool = False  # nobody reads the answer before it is complete: ask the model for it at once
    # By the question's language: favour the shown quotes' tokens by this much (GenerationParams.copy_bias)
    copy_bias: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AnswerQuote:
    """A quote the model was shown, under its number in the prompt."""

    number: int
    chunk_id: int
    collection_id: int
    dataset_id: int | None
    source: str
    page: int | None
    score: float
    text: str
    cited: bool

    def to_dict(self) -> dict:
        return {
            "number": self.number,
            "id": self.chunk_id,
            "collection_id": self.collection_id,
            "dataset_id": self.dataset_id,
            "source": self.source,
            "page": self.page,
            "score": self.score,
            "text": self.text,
            "cited": self.cited,
        }


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)

    def to_dict(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Timings:
    """Milliseconds: each stage, and first token / total counted from the start of the request."""

    rewrite_ms: float = 0.0
    retrieval_ms: float = 0.0
    first_token_ms: float | None = None
    total_ms: float = 0.0

    def to_dict(self) -> dict:
        return {k: (round(v, 1) if v is not None else None) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Answer:
    """The finished answer with what it was built from."""

    text: str
    quotes: list[AnswerQuote]
    query: str  # what was searched: the question, or its standalone rewrite
    language: str
    not_found: bool
    finish_reason: str
    model: str
    usage: Usage
    timings: Timings
    dropped_history_messages: int = 0
    cited_by: str | None = None  # "model" when it wrote the [n] itself, "kb" when kb.rag.citations added it
    # The model's citations kb re-pointed to the quote holding their sentence: (numbers written, numbers shown)
    corrected_citations: list[tuple[list[int], list[int]]] = field(default_factory=list)

    @property
    def cited(self) -> list[int]:
        return [q.number for q in self.quotes if q.cited]


@dataclass
class _Clock:
    start: float = field(default_factory=time.perf_counter)

    def ms(self, since: float | None = None) -> float:
        return (time.perf_counter() - (self.start if since is None else since)) * 1000


def _answer_quotes(
    shown: Sequence[PromptQuote], found: Sequence[RetrievedQuote], cited: Sequence[int]
) -> list[AnswerQuote]:
    return [
        AnswerQuote(
            number=i + 1,
            chunk_id=hit.chunk_id,
            collection_id=hit.collection_id,
            dataset_id=hit.dataset_id,
            source=hit.source,
            page=hit.page,
            score=hit.score,
            text=quote.text,
            cited=(i + 1) in cited,
        )
        for i, (quote, hit) in enumerate(zip(shown, found))
    ]


def _uncited_copy(text: str, quotes: Sequence[PromptQuote]) -> int | None:
    """For an answer that cites nothing: the number of the quote it was copied from, if one clearly was."""
    if extract_citations(text, len(quotes)):
        return None
    return source_of_copy(text, [quote.text for quote in quotes])


def _shown(
    found: list[RetrievedQuote], query: str, sentences: int | None, lead: int | None = None
) -> tuple[list[RetrievedQuote], list[PromptQuote]]:
    """The quotes as the prompt shows them, and their hits: whole, or focused on the sentences matching the query
    (with `lead`, the best-ranked quote keeps that many of its own and the others `sentences` between them)."""
    if not sentences:
        return found, [PromptQuote(hit.text, hit.source, hit.page) for hit in found]
    groups = [(found[:1], lead), (found[1:], sentences)] if lead else [(found, sentences)]
    hits, shown = [], []
    for group, keep in groups:
        for quote in focus_quotes([hit.text for hit in group], query, keep):
            hit = group[quote.index]
            hits.append(hit)
            shown.append(PromptQuote(quote.text, hit.source, hit.page))
    return hits, shown


def _whole(
    model: ChatModel, messages: list[dict], params: GenerationParams, cancel: threading.Event | None
) -> Iterator[Completion]:
    yield model.generate(messages, params, cancel)


def answer_question(
    question: str,
    *,
    model: ChatModel,
    retrieve: Retriever,
    config: AnswerConfig = AnswerConfig(),
    history: Sequence[dict] = (),
    params: GenerationParams | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[StreamDelta | Answer]:
    """Retrieve, build the quote prompt and start the model; iterate for the answer, ending with an `Answer`."""
    clock = _Clock()
    params = params or GenerationParams(temperature=0.0)
    answer_tokens = params.max_tokens or config.answer_tokens
    query, usage = question, Usage()
    if history and config.rewrite_follow_ups:
        rewritten = rewrite_question(question, history, model, cancel)
        query, usage = rewritten.query, Usage(rewritten.prompt_tokens, rewritten.completion_tokens)
    rewrite_ms = clock.ms()

    started = time.perf_counter()
    found, shown = _shown(list(retrieve(query)), query, config.quote_sentences, config.lead_sentences)
    retrieval_ms = clock.ms(started)
    prompt = build_quote_prompt(
        question=question,
        quotes=shown,
        counter=model,
        answer_tokens=answer_tokens,
        quote_budget=config.quote_budget,
        system_prompt=config.system_prompt,
        history=history,
        allow_general_knowledge=config.allow_general_knowledge,
        max_history_turns=config.max_history_turns,
        rules_in_system=config.rules_in_system,
    )

    draft = _Draft(prompt, found, query, model.name, clock, rewrite_ms, retrieval_ms)
    if not prompt.quotes and not config.allow_general_knowledge:
        reply = config.not_found_reply or not_found_reply(prompt.language)
        return _canned(draft, reply, usage)
    answer_params = replace(params, max_tokens=answer_tokens)
    if bias := config.copy_bias.get(prompt.language, 0.0):
        copy_from = "\n".join(quote.text for quote in prompt.quotes)
        answer_params = replace(answer_params, copy_from=copy_from, copy_bias=bias)
    if config.whole_answer:  # a remote model can then take a whole answer from its next provider if one breaks off
        check_params(answer_params)
        pieces: Iterator[StreamDelta | Completion] = _whole(model, prompt.messages, answer_params, cancel)
    else:
        pieces = model.stream(prompt.messages, answer_params, cancel)
    return _generate(draft, pieces, usage, config)


@dataclass
class _Draft:
    """What an answer is made of before the model speaks: its prompt, the quotes found, and the clock."""

    prompt: QuotePrompt
    found: list[RetrievedQuote]
    query: str
    model_name: str
    clock: _Clock
    rewrite_ms: float
    retrieval_ms: float

    def finish(
        self,
        text: str,
        reason: str,
        total: Usage,
        first_token_ms: float | None,
        not_found: bool,
        cited_by: str | None = None,
        corrected: list[tuple[list[int], list[int]]] | None = None,
    ) -> Answer:
        cited = extract_citations(text, len(self.prompt.quotes))
        return Answer(
            text=text,
            quotes=_answer_quotes(self.prompt.quotes, self.found, cited),
            query=self.query,
            language=self.prompt.language,
            not_found=not_found,
            finish_reason=reason,
            model=self.model_name,
            usage=total,
            timings=Timings(self.rewrite_ms, self.retrieval_ms, first_token_ms, self.clock.ms()),
            dropped_history_messages=self.prompt.dropped_history_messages,
            cited_by=(cited_by or "model") if cited else None,
            corrected_citations=corrected or [],
        )


def _canned(draft: _Draft, reply: str, usage: Usage) -> Iterator[StreamDelta | Answer]:
    """The not-found reply, without calling the model."""
    yield StreamDelta(reply)
    yield draft.finish(reply, "stop", usage, draft.clock.ms(), not_found=True)


def _generate(
    draft: _Draft, pieces: Iterator[StreamDelta | Completion], usage: Usage, config: AnswerConfig
) -> Iterator[StreamDelta | Answer]:
    """Pass the model's deltas on (each citation checked before it is shown), then end with the `Answer`.

    A cancelled generation (Stop, or the client went away) ends with the partial answer, marked `stopped`,
    so it can be kept; its completion tokens are the pieces that were written.
    """
    checker = CitationChecker([q.text for q in draft.prompt.quotes]) if config.check_citations else None
    first_token_ms = None
    written: list[str] = []
    try:
        for item in pieces:
            if isinstance(item, Completion):
                if checker is not None and (rest := checker.finish()):
                    yield StreamDelta(rest)
                yield from _completed(draft, item, usage, first_token_ms, config)
                return
            if first_token_ms is None:
                first_token_ms = draft.clock.ms()
            written.append(item.text)
            shown = item.text if checker is None else checker.feed(item.text)
            if shown:
                yield StreamDelta(shown)
    except GenerationCancelled:
        spent = usage + Usage(draft.prompt.prompt_tokens, len(written))
        text, corrected = _checked("".join(written), draft, config)
        yield draft.finish(text, STOPPED, spent, first_token_ms, False, corrected=corrected)
        return
    raise RuntimeError("the chat model's stream ended without its Completion")


def _checked(text: str, draft: _Draft, config: AnswerConfig) -> tuple[str, list[tuple[list[int], list[int]]]]:
    """The answer as its reader saw it: with its citations checked (kb.rag.citations), and those re-pointed."""
    if not config.check_citations:
        return text, []
    return check_citations(text, [q.text for q in draft.prompt.quotes])


def _completed(
    draft: _Draft, item: Completion, usage: Usage, first_token_ms: float | None, config: AnswerConfig
) -> Iterator[StreamDelta | Answer]:
    """The end of a finished generation: a citation added to an uncited copy, then the `Answer`."""
    if first_token_ms is None:  # a whole answer: its first token arrived with the rest
        first_token_ms = draft.clock.ms()
    checked, corrected = _checked(item.text, draft, config)
    copied = _uncited_copy(checked, draft.prompt.quotes) if config.cite_copied_quote else None
    if copied is not None:
        yield StreamDelta(f" [{copied}]")
    text = checked if copied is None else f"{checked} [{copied}]"
    total = usage + Usage(item.prompt_tokens, item.completion_tokens)
    yield draft.finish(text, item.finish_reason, total, first_token_ms, False, "kb" if copied else None, corrected)
