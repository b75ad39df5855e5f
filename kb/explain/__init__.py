"""How a language model works: a tiny GPT over tokens 0/1 with a 3-token context, read back as a Markov chain.

Typical use (CLI or page): `result = train_tiny_gpt(sequence, steps)`, then `explain_figures(result, lang)`,
`explain_texts(result, lang)` or `format_explain_text(result, lang)`. Bad input raises `kb.errors.BadRequest`.
"""

from __future__ import annotations

from kb.explain.present import ExplainFigures, ambiguity_text, explain_figures, explain_texts, format_explain_text
from kb.explain.strings import LANGUAGES, TEXT, resolve_language
from kb.explain.svg import render_training_plot_svg, render_transition_svg
from kb.explain.training import (
    CONTEXT_LENGTH,
    DEFAULT_SEQUENCE,
    DEFAULT_STEPS,
    MAX_SEQUENCE_LENGTH,
    MAX_STEPS,
    ExplainResult,
    all_states,
    train_tiny_gpt,
    validate_explain_input,
)

__all__ = [
    "CONTEXT_LENGTH",
    "DEFAULT_SEQUENCE",
    "DEFAULT_STEPS",
    "LANGUAGES",
    "MAX_SEQUENCE_LENGTH",
    "MAX_STEPS",
    "TEXT",
    "ExplainFigures",
    "ExplainResult",
    "all_states",
    "ambiguity_text",
    "explain_figures",
    "explain_texts",
    "format_explain_text",
    "render_training_plot_svg",
    "render_transition_svg",
    "resolve_language",
    "train_tiny_gpt",
    "validate_explain_input",
]
