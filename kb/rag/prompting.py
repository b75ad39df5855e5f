"""The quote prompt: numbered quotes, rules, history and the question, fitted to the chat model's context.

Pure: it measures with the model's tokenizer through `TokenCounter` and never touches a database.
Priorities inside the context: the question (never cut) and room for the answer, then the quotes (up
to the quote budget, in rank order, the last one cut to fit), then the most recent history turns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from kb.errors import BadRequest

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LATIN_WORD = re.compile(r"[A-Za-z]+")
MIN_CUT_QUOTE_TOKENS = 24  # a cut quote shorter than this says too little to be worth its number
ELLIPSIS = "…"

# Two placements of the rules, chosen per chat model (`rules_in_system`, measured in bench/answer.py):
# - in the user turn, between the quotes and the question: the tiny SmolLM2-135M ignored them anywhere else;
# - in the system message, with the app's own system prompt: Qwen2.5 follows them there, and that prefix is the
#   same for every question of an app, so llama.cpp reuses its KV cache instead of reading it again.
# The system wording asks for whole sentences first and the number at their end: told to "cite it like [1]"
# (or shown a template such as "<sentence> [2]"), Qwen2.5-Coder often replied with nothing but "[1]".
SYSTEM_RULES = {
    "en": {
        "strict": (
            "You answer the user's question using only the numbered quotes the user gives. Answer in one or two "
            "complete sentences, in the words of the quotes, and end with the number of the quote you used in "
            "square brackets. If the quotes do not contain the answer, say that you don't know. Answer in English."
        ),
        "general": (
            "You answer the user's question using the numbered quotes the user gives. Answer in one or two complete "
            "sentences, in the words of the quotes, and end with the number of the quote you used in square "
            "brackets. If the quotes do not contain the answer, you may answer from your own knowledge. "
            "Answer in English."
        ),
    },
    "zh": {
        "strict": "你只根据用户给出的编号引用回答问题。用一两个完整的句子回答，尽量使用引用的原文，并在句末用方括号写上所用"
        "引用的编号。如果引用中没有答案，请说不知道。请用中文回答。",
        "general": "你根据用户给出的编号引用回答问题。用一两个完整的句子回答，尽量使用引用的原文，并在句末用方括号写上所用"
        "引用的编号。如果引用中没有答案，可以用你自己的知识回答。请用中文回答。",
    },
}
RULES = {
    "en": {
        "strict": (
            "Answer the question using only the quotes above: copy the words of the quote that answers it "
            "and cite it like [1]. If the quotes do not contain the answer, say that you don't know. Answer in English."
        ),
        "general": (
            "Answer the question using the quotes above and cite the quote you use like [1]. If the quotes do not "
            "contain the answer, you may answer from your own knowledge. Answer in English."
        ),
        "quotes": "Quotes:",
        "question": "Question:",
        "page": "p. {page}",
    },
    "zh": {
        "strict": "请只根据上面的引用回答问题：摘录能回答问题的引用原文，并用 [1] 这样的编号标注出处。如果引用中没有答案，请说不知道。请用中文回答。",
        "general": "请根据上面的引用回答问题，并用 [1] 这样的编号标注出处。如果引用中没有答案，可以用你自己的知识回答。请用中文回答。",
        "quotes": "引用：",
        "question": "问题：",
        "page": "第{page}页",
    },
}
NOT_FOUND_REPLY = {
    "en": "Sorry, I couldn't find anything about that in the knowledge base.",
    "zh": "抱歉，知识库中没有找到相关内容。",
}


class TokenCounter(Protocol):
    """What prompt building needs from a chat model: its tokenizer and its context length."""

    context_length: int

    def count_tokens(self, text: str) -> int: ...

    def count_prompt_tokens(self, messages: list[dict], tools: list[dict] | None = None) -> int: ...


@dataclass(frozen=True)
class PromptQuote:
    """A quote as the prompt shows it."""

    text: str
    source: str
    page: int | None = None


# One worked exchange after the system rules (Qwen only, with `rules_in_system`), measured with bench/answer.py
# (Qwen2.5-Coder-1.5B, 100 questions per kit). Told in words only, the model wrote its own [n] on 10 English and 31
# Chinese replies; shown once, on 100 and 93, and cited hit rose 0.38 -> 0.60 (English) and 0.86 -> 0.89 (Chinese).
# The Chinese answer copies the quote's whole sentence: a bare-fact example ("诺维克塔高330米。") taught short
# replies that dropped part of the answer (answer hit 0.45, against 0.49 without an example and 0.53 with this
# one). The exchange is part of the fixed prefix that llama.cpp keeps cached (174 tokens read once). Its facts
# are made up so that no real quote can match them.
EXAMPLE = {
    "en": {
        "quotes": [
            PromptQuote("The Norrvik tower was finished in 1889 for the fair. It is 330 metres tall.", "tower.md"),
            PromptQuote("The Ossa river is 776 km long.", "river.md"),
        ],
        "question": "How tall is the Norrvik tower?",
        "answer": "The Norrvik tower is 330 metres tall. [1]",
    },
    "zh": {
        "quotes": [
            PromptQuote("诺维克塔于1889年为博览会建成。塔高330米，是当时世界上最高的建筑。", "塔.md"),
            PromptQuote("奥萨河全长776公里。", "河.md"),
        ],
        "question": "诺维克塔有多高？",
        "answer": "诺维克塔高330米，是当时世界上最高的建筑。[1]",
    },
}


@dataclass(frozen=True)
class QuotePrompt:
    """The messages to send and what made it in: `quotes[i]` is quote number i + 1, maybe cut."""

    messages: list[dict]
    quotes: list[PromptQuote]
    language: str
    prompt_tokens: int
    history_messages: int
    dropped_history_messages: int
    cut_quotes: list[int] = field(default_factory=list)  # numbers of quotes shortened to fit
    dropped_quotes: int = 0


def detect_language(text: str) -> str:
    """'zh' when Chinese characters outnumber Latin words, else 'en'."""
    return "zh" if len(CJK.findall(text)) > len(LATIN_WORD.findall(text)) else "en"


def not_found_reply(language: str) -> str:
    """The built-in reply when nothing relevant was found, in the question's language."""
    return NOT_FOUND_REPLY[language]


def quote_line(number: int, quote: PromptQuote, language: str) -> str:
    """`[n] (source, p. 3) text` — the source and page tell the model (and a reader) where it comes from."""
    where = quote.source
    if quote.page is not None:
        where = f"{where}, {RULES[language]['page'].format(page=quote.page)}"
    text = " ".join(quote.text.split())
    return f"[{number}] ({where}) {text}"


def cut_to_tokens(text: str, max_tokens: int, count_tokens) -> str:
    """The longest prefix of `text` (plus an ellipsis) that measures at most `max_tokens`."""
    if count_tokens(text) <= max_tokens:
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(text[:middle].rstrip() + ELLIPSIS) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + ELLIPSIS if low else ""


def _user_text(question: str, quote_lines: Sequence[str], language: str, rules: str) -> str:
    words = RULES[language]
    quotes = f"{words['quotes']}\n" + "\n".join(quote_lines) + "\n\n" if quote_lines else ""
    return f"{quotes}{rules}\n\n{words['question']} {question}" if rules else f"{quotes}{words['question']} {question}"


def _system_and_rules(
    system_prompt: str, language: str, general: bool, rules_in_system: bool
) -> tuple[list[dict], str]:
    """The messages before the history (system, and the worked example with Qwen's placement) and the user-turn rules."""
    mode = "general" if general else "strict"
    if not rules_in_system:
        system = [{"role": "system", "content": system_prompt.strip()}] if system_prompt.strip() else []
        return system, RULES[language][mode]
    content = "\n\n".join(part for part in (system_prompt.strip(), SYSTEM_RULES[language][mode]) if part)
    example = EXAMPLE[language]
    lines = [quote_line(i + 1, quote, language) for i, quote in enumerate(example["quotes"])]
    return [
        {"role": "system", "content": content},
        {"role": "user", "content": _user_text(example["question"], lines, language, "")},
        {"role": "assistant", "content": example["answer"]},
    ], ""


def _fit_quotes(
    quotes: Sequence[PromptQuote], room: int, language: str, counter: TokenCounter
) -> tuple[list[PromptQuote], list[int]]:
    """Quotes in rank order while they fit `room` tokens; the first that does not is cut, the rest dropped."""
    kept: list[PromptQuote] = []
    cut: list[int] = []
    for quote in quotes:
        number = len(kept) + 1
        cost = counter.count_tokens(quote_line(number, quote, language) + "\n")
        if cost <= room:
            kept.append(quote)
            room -= cost
            continue
        overhead = counter.count_tokens(quote_line(number, PromptQuote("", quote.source, quote.page), language) + "\n")
        if room - overhead >= MIN_CUT_QUOTE_TOKENS:
            text = cut_to_tokens(" ".join(quote.text.split()), room - overhead, counter.count_tokens)
            kept.append(PromptQuote(text, quote.source, quote.page))
            cut.append(number)
        break
    return kept, cut


def _turns(history: Sequence[dict]) -> list[list[dict]]:
    """History grouped into turns, each starting at a user message, so a question keeps its answer."""
    turns: list[list[dict]] = []
    for message in history:
        if message.get("role") == "user" or not turns:
            turns.append([])
        turns[-1].append({"role": message["role"], "content": message.get("content") or ""})
    return turns


def build_quote_prompt(
    *,
    question: str,
    quotes: Sequence[PromptQuote],
    counter: TokenCounter,
    answer_tokens: int,
    quote_budget: int,
    system_prompt: str = "",
    history: Sequence[dict] = (),
    allow_general_knowledge: bool = False,
    max_history_turns: int = 4,
    rules_in_system: bool = False,
) -> QuotePrompt:
    """Messages for the chat model: rules + numbered quotes + recent history + the question, within the context."""
    language = detect_language(question)
    # With the rules in the user turn and no app system prompt, the chat template's own default applies.
    system, rules = _system_and_rules(system_prompt, language, allow_general_knowledge, rules_in_system)

    def assemble(kept: Sequence[PromptQuote], turns: Sequence[list[dict]]) -> list[dict]:
        lines = [quote_line(i + 1, q, language) for i, q in enumerate(kept)]
        past = [m for turn in turns for m in turn]
        return [*system, *past, {"role": "user", "content": _user_text(question, lines, language, rules)}]

    limit = counter.context_length - answer_tokens
    bare = counter.count_prompt_tokens(assemble([], []))
    if bare > limit:
        raise BadRequest(
            f"the question needs {bare} prompt tokens and the answer {answer_tokens}, more than the "
            f"{counter.context_length}-token context of model '{getattr(counter, 'name', 'chat')}'; ask a shorter question",
            code="context_length_exceeded",
        )
    kept, cut = _fit_quotes(quotes, min(quote_budget, limit - bare), language, counter)
    # Token counts of pieces do not add up exactly once templated (headers, merges): shrink until the whole fits.
    while kept and (overflow := counter.count_prompt_tokens(assemble(kept, [])) - limit) > 0:
        last = kept.pop()
        room = counter.count_tokens(last.text) - overflow
        if room >= MIN_CUT_QUOTE_TOKENS:
            kept.append(PromptQuote(cut_to_tokens(last.text, room, counter.count_tokens), last.source, last.page))
            cut = sorted({*cut, len(kept)})
        else:
            cut = [n for n in cut if n <= len(kept)]

    turns = _turns(history)
    chosen: list[list[dict]] = []
    for turn in reversed(turns[-max_history_turns:] if max_history_turns > 0 else []):
        if counter.count_prompt_tokens(assemble(kept, [turn, *chosen])) > limit:
            break
        chosen.insert(0, turn)
    messages = assemble(kept, chosen)
    kept_messages = sum(len(t) for t in chosen)
    return QuotePrompt(
        messages=messages,
        quotes=kept,
        language=language,
        prompt_tokens=counter.count_prompt_tokens(messages),
        history_messages=kept_messages,
        dropped_history_messages=sum(len(t) for t in turns) - kept_messages,
        cut_quotes=cut,
        dropped_quotes=len(quotes) - len(kept),
    )
