"""QA split stage: ask a chat model for question/answer pairs, chunk by chunk, and say why a chunk gave none."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kb.errors import Cancelled, KBError
from kb.ingest.qa import build_qa_messages, parse_qa_pairs
from kb.ingest.types import ChunkDraft
from kb.ml.types import ChatModel, GenerationParams

log = logging.getLogger(__name__)

MAX_ANSWER_TOKENS = 512
NO_PAIRS = "the model's reply held no question/answer pairs"
CUT_OFF = "the model's reply was cut off before a complete pair"


@dataclass
class QAOutcome:
    """Pairs per input chunk (same order; [] for none) and the reasons behind the empty ones."""

    pairs: list[list[tuple[str, str]]]
    no_pair_reasons: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def pair_count(self) -> int:
        return sum(len(p) for p in self.pairs)

    @property
    def chunks_without_pairs(self) -> int:
        return sum(1 for p in self.pairs if not p)

    def stats(self, model_name: str) -> dict:
        return {
            "chat_model": model_name,
            "source_chunks": len(self.pairs),
            "qa_pairs": self.pair_count,
            "chunks_with_pairs": len(self.pairs) - self.chunks_without_pairs,
            "chunks_without_pairs": self.chunks_without_pairs,
            "no_pair_reasons": dict(self.no_pair_reasons.most_common()),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }

    def warning(self) -> str | None:
        """A sentence for the user when some chunks gave no pairs (they stay searchable as plain chunks)."""
        missing = self.chunks_without_pairs
        if not missing:
            return None
        reason, _ = self.no_pair_reasons.most_common(1)[0]
        return (
            f"{missing} of {len(self.pairs)} chunks gave no question/answer pairs (mostly: {reason}); "
            "they are kept as plain searchable chunks."
        )


def generate_qa_pairs(
    chat: ChatModel,
    drafts: Sequence[ChunkDraft],
    *,
    max_pairs: int = 5,
    cancel: threading.Event | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> QAOutcome:
    """Ask `chat` for up to `max_pairs` pairs per chunk; a failure on one chunk never stops the others."""
    outcome = QAOutcome(pairs=[])
    params = GenerationParams(max_tokens=MAX_ANSWER_TOKENS, temperature=0.0)
    for index, draft in enumerate(drafts):
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        pairs: list[tuple[str, str]] = []
        try:
            completion = chat.generate(build_qa_messages(draft.q, max_pairs=max_pairs), params)
            outcome.prompt_tokens += completion.prompt_tokens
            outcome.completion_tokens += completion.completion_tokens
            pairs = parse_qa_pairs(completion.text)[:max_pairs]
            if not pairs:
                outcome.no_pair_reasons[CUT_OFF if completion.finish_reason == "length" else NO_PAIRS] += 1
        except KBError as exc:
            outcome.no_pair_reasons[f"the chat model refused: {exc.message}"] += 1
        except Exception as exc:  # a model failure on one chunk must not cost the whole document
            log.exception("Q/A generation failed on chunk %d", index)
            outcome.no_pair_reasons[f"the chat model failed ({type(exc).__name__})"] += 1
        outcome.pairs.append(pairs)
        if on_chunk is not None:
            on_chunk(index + 1, len(drafts))
    return outcome
