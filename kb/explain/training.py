"""Train the tiny GPT on a binary sequence and read it back as a Markov chain over its full-context states."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from kb.errors import BadRequest
from kb.explain.model import TinyGPT, TinyGPTConfig, build_tiny_gpt

DEFAULT_SEQUENCE = "111101111011110"
DEFAULT_STEPS = 50
DEFAULT_SEED = 1337
# One block with AdamW at 1e-2 and beta2 0.95 reached the data's frequencies within 0.1 in 50 steps for
# 29 of 30 seeds on the default sequence; two blocks or higher rates overshoot on the ambiguous state 111.
DEFAULT_LEARNING_RATE = 1e-2
ADAM_BETAS = (0.9, 0.95)
CONTEXT_LENGTH = 3
MAX_CONTEXT_LENGTH = 4
MAX_SEQUENCE_LENGTH = 2_000
MAX_STEPS = 2_000
SAMPLE_LENGTH = 30


@dataclass(frozen=True)
class ExplainResult:
    """Everything the CLI and the /learn page show; probabilities are P(next token = 1 | state)."""

    sequence: str
    steps: int
    seed: int
    learning_rate: float
    context_length: int
    parameter_count: int
    before: dict[str, float]
    after: dict[str, float]
    counts: dict[str, tuple[int, int]]
    empirical: dict[str, float | None]
    loss: list[float]
    loss_floor: float
    tracked: dict[str, list[float]]
    sample: str
    unseen: list[str] = field(default_factory=list)

    @property
    def tracked_targets(self) -> dict[str, float | None]:
        """The data's frequency for each tracked transition, keyed like `tracked`."""
        return {key: self.empirical[key[: self.context_length]] for key in self.tracked}


def all_states(context_length: int = CONTEXT_LENGTH) -> list[str]:
    """Every full context as a bit string, in numeric order: 000, 001, ..., 111."""
    return [format(i, f"0{context_length}b") for i in range(2**context_length)]


def validate_explain_input(sequence: str, steps: int | str, *, context_length: int = CONTEXT_LENGTH) -> tuple[str, int]:
    """Return the sequence without whitespace and the step count, or raise BadRequest saying what to fix."""
    if not isinstance(sequence, str):
        raise BadRequest("The sequence must be text made of 0 and 1.", code="sequence_not_binary")
    cleaned = "".join(sequence.split())
    if len(cleaned) > MAX_SEQUENCE_LENGTH:
        raise BadRequest(
            f"The sequence has {len(cleaned):,} tokens; at most {MAX_SEQUENCE_LENGTH:,} are allowed.",
            code="sequence_too_long",
        )
    wrong = sorted(set(cleaned) - {"0", "1"}, key=cleaned.index)
    if wrong:
        shown = ", ".join(repr(ch) for ch in wrong[:10]) + (" ..." if len(wrong) > 10 else "")
        raise BadRequest(
            f"The sequence may contain only 0 and 1; found {shown} (first at position {cleaned.index(wrong[0]) + 1}).",
            code="sequence_not_binary",
        )
    if len(cleaned) < context_length + 1:
        raise BadRequest(
            f"The sequence needs at least {context_length + 1} tokens (a context of {context_length} and one token"
            f" to predict); it has {len(cleaned)}.",
            code="sequence_too_short",
        )
    return cleaned, _parse_steps(steps)


def _parse_steps(steps: object) -> int:
    text = steps.strip() if isinstance(steps, str) else ""
    if text.isdecimal() and len(text) <= 9:  # a longer number is out of range anyway, and int() refuses huge strings
        steps = int(text)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        shown = repr(steps)[:24]
        raise BadRequest(
            f"Training steps must be a whole number from 1 to {MAX_STEPS:,}; got {shown}.", code="bad_steps"
        )
    return steps


def transition_counts(sequence: str, context_length: int = CONTEXT_LENGTH) -> dict[str, tuple[int, int]]:
    """For every full state, how often the data follows it with 0 and with 1."""
    ends = range(context_length, len(sequence))
    seen = Counter((sequence[end - context_length : end], sequence[end]) for end in ends)
    return {state: (seen[state, "0"], seen[state, "1"]) for state in all_states(context_length)}


def empirical_probabilities(counts: dict[str, tuple[int, int]]) -> dict[str, float | None]:
    """P(next = 1 | state) as counted in the data; None for a state the data never shows."""
    return {state: (ones / (zeros + ones) if zeros + ones else None) for state, (zeros, ones) in counts.items()}


def training_windows(sequence: str, context_length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distinct (context_length + 1)-token windows as inputs, shifted targets and how often each occurs."""
    windows = Counter(sequence[i : i + context_length + 1] for i in range(len(sequence) - context_length))
    rows = torch.tensor([[int(ch) for ch in window] for window in windows])
    weights = torch.tensor(list(windows.values()), dtype=torch.float32)
    return rows[:, :-1], rows[:, 1:], weights / weights.sum()


def loss_floor(sequence: str, context_length: int) -> float:
    """The lowest mean loss any model can reach: the entropy the data leaves after seeing each (partial) context."""
    windows = [sequence[i : i + context_length + 1] for i in range(len(sequence) - context_length)]
    outcomes = Counter((pos, window[: pos + 1], window[pos + 1]) for window in windows for pos in range(context_length))
    totals = Counter((pos, context) for pos, context, _ in outcomes.elements())
    nats = -sum(n * math.log(n / totals[pos, context]) for (pos, context, _), n in outcomes.items())
    return nats / (len(windows) * context_length)


def state_probabilities(model: TinyGPT, states: list[str]) -> dict[str, float]:
    """P(next = 1 | state) the model gives at the last position of each full context."""
    idx = torch.tensor([[int(ch) for ch in state] for state in states])
    with torch.no_grad():
        probs = F.softmax(model(idx)[:, -1, :], dim=-1)[:, 1]
    return dict(zip(states, probs.tolist()))


def sample_chain(probs: dict[str, float], start: str, length: int, generator: torch.Generator) -> str:
    """Generate `length` tokens (start included) by following the model's transition probabilities."""
    text = start
    draws = torch.rand(max(length - len(start), 0), generator=generator).tolist()
    for draw in draws:
        text += "1" if draw < probs[text[-len(start) :]] else "0"
    return text


def pick_tracked_states(empirical: dict[str, float | None]) -> list[str]:
    """The seen state whose next token is most uncertain, and the one where it is most certain."""
    seen = [state for state, p in empirical.items() if p is not None]
    ambiguous = min(seen, key=lambda s: abs(empirical[s] - 0.5))
    certain = [s for s in seen if s != ambiguous]
    return [ambiguous] + ([max(certain, key=lambda s: abs(empirical[s] - 0.5))] if certain else [])


def _first_row_with_context(inputs: torch.Tensor, state: str) -> int:
    wanted = torch.tensor([int(ch) for ch in state])
    return int((inputs == wanted).all(dim=1).nonzero()[0, 0])


def tracked_key(state: str) -> str:
    """Label of the tracked transition 'state followed by 1'."""
    return f"{state}→1"


def _fit(
    model: TinyGPT, sequence: str, steps: int, lr: float, tracked_states: list[str]
) -> tuple[list[float], dict[str, list[float]]]:
    """Full-batch AdamW; returns the loss and tracked P(1 | state) before training and after every step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=ADAM_BETAS, weight_decay=0.0)
    inputs, targets, weights = training_windows(sequence, model.config.context_length)
    # Tracked states are seen in the data, so some training row ends in each: read its last-position prediction.
    tracked_rows = {tracked_key(state): _first_row_with_context(inputs, state) for state in tracked_states}
    losses: list[float] = []
    tracked: dict[str, list[float]] = {key: [] for key in tracked_rows}
    for step in range(steps + 1):
        logits = model(inputs)
        per_token = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        loss = (per_token.mean(dim=1) * weights).sum()
        losses.append(loss.item())
        last_p1 = F.softmax(logits[:, -1, :].detach(), dim=-1)[:, 1].tolist()
        for key, row in tracked_rows.items():
            tracked[key].append(last_p1[row])
        if step < steps:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return losses, tracked


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run on one intra-op thread, then restore the caller's setting.

    Tensors this small gain nothing from a second thread, and on a busy 2-core machine the hand-off made training
    about 6x slower (500 steps: 1.6 s on one thread, 9-11 s on two). Under OpenMP the count belongs to the calling
    thread, so other threads are not affected.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_tiny_gpt(
    sequence: str = DEFAULT_SEQUENCE,
    steps: int = DEFAULT_STEPS,
    *,
    seed: int = DEFAULT_SEED,
    lr: float = DEFAULT_LEARNING_RATE,
    context_length: int = CONTEXT_LENGTH,
    sample_length: int = SAMPLE_LENGTH,
) -> ExplainResult:
    """Train a fresh tiny GPT on `sequence` for `steps` full-batch AdamW steps and describe what it learned."""
    if not 1 <= context_length <= MAX_CONTEXT_LENGTH:
        raise ValueError(f"context_length must be 1..{MAX_CONTEXT_LENGTH} (its 2**n states are drawn as a graph)")
    sequence, steps = validate_explain_input(sequence, steps, context_length=context_length)
    states = all_states(context_length)
    counts = transition_counts(sequence, context_length)
    empirical = empirical_probabilities(counts)
    tracked_states = pick_tracked_states(empirical)

    with _one_torch_thread():
        model = build_tiny_gpt(TinyGPTConfig(context_length=context_length), torch.Generator().manual_seed(seed))
        before = state_probabilities(model, states)
        losses, tracked = _fit(model, sequence, steps, lr, tracked_states)
        after = state_probabilities(model, states)
    start = sequence[:context_length]
    return ExplainResult(
        sequence=sequence,
        steps=steps,
        seed=seed,
        learning_rate=lr,
        context_length=context_length,
        parameter_count=model.parameter_count(),
        before=before,
        after=after,
        counts=counts,
        empirical=empirical,
        loss=losses,
        loss_floor=loss_floor(sequence, context_length),
        tracked=tracked,
        sample=sample_chain(after, start, sample_length, torch.Generator().manual_seed(seed)),
        unseen=[state for state in states if empirical[state] is None],
    )
