"""Answers as HTML: Markdown rendered on the server, then sanitised, with citations as quote buttons.

Document text and model output are never trusted as HTML. Three layers keep them inert:
markdown-it runs with raw HTML off (a `<script>` in the text comes out as text), nh3 then keeps only
an allowlist of tags and attributes (links only to http, https and mailto), and the page's CSP
forbids inline code anyway. The only markup added on purpose is the citation button, made here
from a number and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Collection

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markupsafe import Markup

from kb.rag.citations import CITATION

SAFE_LINK = re.compile(r"^(?:https?://|mailto:)", re.IGNORECASE)
_NUMBER_SEPARATORS = re.compile(r"[,，、;；]")

_TAGS = {
    "p",
    "br",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "strong",
    "em",
    "s",
    "del",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "button",
}


def _keep_attribute(tag: str, attribute: str, value: str) -> str | None:
    """Links may only leave for the web or mail; a citation names a quote by its number."""
    if attribute == "href":
        return value if SAFE_LINK.match(value.strip()) else None
    if attribute == "data-quote":
        return value if value.isdigit() else None
    return value


_cleaner = nh3.Cleaner(
    tags=_TAGS,
    attributes={"a": {"href", "title"}, "ol": {"start"}, "button": {"data-quote"}},
    tag_attribute_values={"button": {"type": {"button"}}},
    allowed_classes={"button": {"cite"}},
    url_schemes={"http", "https", "mailto"},
    attribute_filter=_keep_attribute,
    link_rel="noopener noreferrer nofollow",
)


def _citation_button(number: int) -> Token:
    token = Token("html_inline", "", 0)
    token.content = f'<button type="button" class="cite" data-quote="{number}">[{number}]</button>'
    return token


def _text(content: str) -> Token:
    token = Token("text", "", 0)
    token.content = content
    return token


def _split_citations(content: str, numbers: Collection[int]) -> list[Token]:
    """Text with each citation of a known quote turned into buttons; other brackets stay text."""
    tokens: list[Token] = []
    position = 0
    for match in CITATION.finditer(content):
        cited = [int(part) for part in _NUMBER_SEPARATORS.split(match.group(1))]
        if not all(number in numbers for number in cited):
            continue
        if match.start() > position:
            tokens.append(_text(content[position : match.start()]))
        tokens.extend(_citation_button(number) for number in cited)
        position = match.end()
    if position < len(content):
        tokens.append(_text(content[position:]))
    return tokens


def _citations(state: StateCore) -> None:
    numbers = state.env.get("quote_numbers") or ()
    if not numbers:
        return
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        children: list[Token] = []
        link_depth = 0  # a button inside a link would be invalid HTML and a confusing click
        for token in block.children:
            link_depth += {"link_open": 1, "link_close": -1}.get(token.type, 0)
            if token.type == "text" and link_depth == 0:
                children.extend(_split_citations(token.content, numbers))
            else:
                children.append(token)
        block.children = children


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "breaks": True})
    md.enable(["table", "strikethrough"])
    md.disable("image")  # images would load from anywhere the text says; links are enough
    md.core.ruler.push("kb_citations", _citations)
    return md


_md = _markdown()


def sanitise_html(html: str) -> Markup:
    """Keep only the tags and attributes an answer may use; drop everything else."""
    return Markup(_cleaner.clean(html))


def render_answer(text: str, quote_numbers: Collection[int] = ()) -> Markup:
    """Markdown to safe HTML; `[n]` for a number in `quote_numbers` becomes a button that opens quote n."""
    return sanitise_html(_md.render(text, {"quote_numbers": frozenset(quote_numbers)}))
