"""Turn an ExplainResult into what people see: filled-in texts, the three SVG figures, a plain-text summary."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from kb.explain.strings import TEXT, resolve_language
from kb.explain.svg import render_training_plot_svg, render_transition_svg
from kb.explain.training import ExplainResult

PREVIEW_LENGTH = 60
# Templates filled per item (a state, a count, the loss) rather than once per page.
ITEM_TEMPLATES = {"ambiguous", "ambiguous_item", "seen_count", "loss_line"}


@dataclass(frozen=True)
class ExplainFigures:
    before_svg: str
    after_svg: str
    training_svg: str


def _display_width(text: str) -> int:
    """Terminal columns: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int, *, right: bool = False) -> str:
    fill = " " * max(width - _display_width(text), 0)
    return fill + text if right else text + fill


def _preview(sequence: str) -> str:
    return sequence if len(sequence) <= PREVIEW_LENGTH else sequence[:PREVIEW_LENGTH] + "…"


def ambiguity_text(result: ExplainResult, lang: str = "en") -> str:
    """One sentence per state the data follows with both tokens, or a sentence saying there is none."""
    words = TEXT[resolve_language(lang)]
    items = [
        words["ambiguous_item"].format(state=state, ones=ones, total=zeros + ones, p=ones / (zeros + ones))
        for state, (zeros, ones) in result.counts.items()
        if zeros and ones
    ]
    return words["ambiguous"].format(items=words["list_separator"].join(items)) if items else words["no_ambiguity"]


def explain_texts(result: ExplainResult, lang: str = "en") -> dict[str, str]:
    """Every text of the page in one language, placeholders filled, plus `ambiguity` for this sequence."""
    fields = {
        "context": result.context_length,
        "states": 2**result.context_length,
        "parameters": result.parameter_count,
        "steps": result.steps,
        "start": result.sample[: result.context_length],
        "sequence": _preview(result.sequence),
        "length": len(result.sequence),
    }
    words = TEXT[resolve_language(lang)]
    texts = {key: template.format(**fields) for key, template in words.items() if key not in ITEM_TEMPLATES}
    texts["ambiguity"] = ambiguity_text(result, lang)
    return texts


def explain_figures(result: ExplainResult, lang: str = "en") -> ExplainFigures:
    """The before/after transition graphs and the training plot, titled in `lang`."""
    texts = explain_texts(result, lang)
    return ExplainFigures(
        before_svg=render_transition_svg(result.before, title=texts["graph_before"], unseen=result.unseen, lang=lang),
        after_svg=render_transition_svg(result.after, title=texts["graph_after"], unseen=result.unseen, lang=lang),
        training_svg=render_training_plot_svg(
            result.loss,
            result.tracked,
            loss_floor=result.loss_floor,
            targets=result.tracked_targets,
            title=texts["plot_title"],
            lang=lang,
        ),
    )


def format_explain_text(result: ExplainResult, lang: str = "en") -> str:
    """Plain-text summary for the terminal: probability table, loss, sample vs data, and why it is not perfect."""
    words = TEXT[resolve_language(lang)]
    texts = explain_texts(result, lang)
    header = (
        _pad(words["table_state"], 7)
        + _pad(words["table_before"], 8, right=True)
        + _pad(words["table_after"], 8, right=True)
    )
    rows = [f"{header}   {words['table_data']}"]
    for state in result.before:
        zeros, ones = result.counts[state]
        data = words["never_seen"]
        if zeros + ones:
            data = f"{ones / (zeros + ones):>4.0%}  ({words['seen_count'].format(ones=ones, total=zeros + ones)})"
        rows.append(f"{state:<7}{result.before[state]:>8.0%}{result.after[state]:>8.0%}   {data}")
    label_width = 2 + max(_display_width(texts["sample_label"]), _display_width(texts["data_label"]))
    return "\n".join(
        [
            texts["header"],
            "",
            texts["table_caption"],
            *rows,
            "",
            words["loss_line"].format(first=result.loss[0], last=result.loss[-1], floor=result.loss_floor),
            "",
            texts["sample_caption"],
            _pad(texts["sample_label"], label_width) + result.sample,
            _pad(texts["data_label"], label_width) + _preview(result.sequence),
            "",
            texts["why_title"],
            texts["why_not_perfect"] + texts["sentence_gap"] + texts["ambiguity"],
        ]
    )
