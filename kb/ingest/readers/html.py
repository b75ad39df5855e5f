"""HTML reader: the page's main content (not menus, scripts or footers) as heading, text, code and table blocks."""

from __future__ import annotations

import codecs
import re
import threading

import lxml.html
import trafilatura
from lxml import etree
from trafilatura.settings import use_config

from kb.ingest import sniff
from kb.ingest.readers.registry import reader
from kb.ingest.readers.structure import HeadingPath, table_lines
from kb.ingest.textutil import decode_text, detect_encoding, tidy
from kb.ingest.types import Block, ParsedDocument, ReadLimits

# trafilatura copies and cleans lxml trees with shared module state: two worker slots extracting at once
# aborted the process inside libxml2 (seen under load). Extraction is a small share of reading, so one at a time.
_EXTRACTING = threading.Lock()

_JUNK_TAGS = (
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "canvas",
    "iframe",
    "object",
    "embed",
    "nav",
    "aside",
    "footer",
    "form",
    "button",
    "select",
    "input",
    "textarea",
    "dialog",
    "menu",
)
_JUNK_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar", "dialog", "alert"}
_JUNK_NAME = re.compile(
    r"(?:^|[-_])(?:nav|navbar|navigation|menu|breadcrumbs?|footer|sidebar|comments?|share|sharing|social|advert|ads"
    r"|cookies?|banner|popup|modal|newsletter|subscribe|related|toc|navbox|catlinks|editsection|printfooter|noprint)(?:$|[-_])",
    re.I,
)
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCK_TAGS = {
    "address",
    "article",
    "blockquote",
    "body",
    "center",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "header",
    "hr",
    "li",
    "main",
    "ol",
    "p",
    "section",
    "summary",
    "ul",
    "caption",
}
_CODE_HINT = re.compile(r"code|highlight|lang-|language-|source|syntax", re.I)
_EDIT_LINK = re.compile(r"\s*\[\s*(?:edit|编辑|編輯)\s*\]\s*$", re.I)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_SPACE_RUN = re.compile(r"\s+")
# Pages whose text is mostly links are web pages with chrome: let trafilatura find the article.
_LINK_DENSE = 0.15
_TRAFILATURA = use_config()
_TRAFILATURA.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")  # its timeout uses signals, which fail outside the main thread


@reader(sniff.HTML, "HTML")
def read_html(data: bytes, name: str, limits: ReadLimits) -> ParsedDocument:
    """Main content in reading order; `<pre>` becomes code (or preformatted text), tables become rows."""
    markup = _XML_DECLARATION.sub("", _decode(data), count=1)
    try:
        tree = lxml.html.document_fromstring(markup)
    except (etree.ParserError, ValueError):
        return ParsedDocument(blocks=[], content_type=sniff.HTML)
    title = _title(tree)
    _prune(tree)
    walker = _Walker()
    walker.walk(_main_content(tree))
    return ParsedDocument(blocks=walker.blocks, content_type=sniff.HTML, title=title)


def _decode(data: bytes) -> str:
    """Bytes that are valid UTF-8 are UTF-8 whatever a <meta> claims; otherwise trust the declared charset."""
    codec = detect_encoding(data)
    if codec not in (None, "utf-8", "utf-8-sig", "utf-16", "utf-32"):
        declared = _META_CHARSET.search(data[:8192])
        if declared:
            codec = _known_codec(declared.group(1).decode("ascii", "ignore")) or codec
    return decode_text(data, codec or "utf-8")


def _known_codec(label: str) -> str | None:
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    return "gb18030" if name in ("gb2312", "gbk") else name


def _title(tree: lxml.html.HtmlElement) -> str | None:
    for path in ("//title", "//h1"):
        found = tree.xpath(path)
        if found:
            text = tidy(_SPACE_RUN.sub(" ", found[0].text_content()))
            if text:
                return text
    return None


def _prune(tree: lxml.html.HtmlElement) -> None:
    """Drop navigation, scripts, hidden parts and boilerplate-named containers (never most of the page)."""
    body = tree.body
    page_chars = len(body.text_content()) if body is not None else 0
    doomed = []
    for element in tree.iter(etree.Element):
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag in ("html", "body", "main", "article", "head", "title"):
            continue
        names = f"{element.get('class', '')} {element.get('id', '')}"
        if (
            tag in _JUNK_TAGS
            or (tag == "header" and not element.xpath("ancestor::article or ancestor::main"))
            or element.get("role", "").lower() in _JUNK_ROLES
            or element.get("hidden") is not None
            or element.get("aria-hidden", "").lower() == "true"
            or _HIDDEN_STYLE.search(element.get("style", ""))
            or (any(_JUNK_NAME.search(n) for n in names.split()) and len(element.text_content()) < 0.5 * page_chars)
        ):
            doomed.append(element)
    for element in doomed:
        if element.getparent() is not None:
            element.drop_tree()


def _main_content(tree: lxml.html.HtmlElement) -> etree._Element:
    body = tree.body if tree.body is not None else tree
    marked = tree.xpath("//main | //*[@role='main']") or (
        tree.xpath("//article") if len(tree.xpath("//article")) == 1 else []
    )
    candidate = marked[0] if marked else body
    if _link_density(body) < _LINK_DENSE:
        return candidate  # a plain document: keep all of it, with its structure
    with _EXTRACTING:
        extracted = trafilatura.extract(
            lxml.html.tostring(tree, encoding="unicode"),
            output_format="html",
            include_tables=True,
            include_formatting=True,
            include_links=False,
            include_images=False,
            include_comments=False,
            config=_TRAFILATURA,
        )
    if extracted:
        return lxml.html.document_fromstring(extracted).body
    return candidate


def _link_density(element: etree._Element) -> float:
    total = len(_SPACE_RUN.sub("", element.text_content()))
    linked = sum(len(_SPACE_RUN.sub("", a.text_content())) for a in element.iter("a"))
    return linked / total if total else 1.0


class _Walker:
    """Turns an element tree into blocks: block-level tags end a text block, inline text runs together."""

    def __init__(self) -> None:
        self.headings = HeadingPath()
        self.blocks: list[Block] = []
        self._buffer: list[str] = []

    def walk(self, element: etree._Element) -> None:
        self._inline(element.text)
        self._children(element)
        self._flush()

    def _children(self, element: etree._Element) -> None:
        for child in element:
            tag = child.tag.lower() if isinstance(child.tag, str) else ""
            if tag in _HEADINGS:
                self._flush()
                text = _EDIT_LINK.sub("", _flat_text(child))
                if text:
                    self.blocks.append(self.headings.heading(text, _HEADINGS[tag]))
            elif tag == "pre":
                self._flush()
                self._pre(child)
            elif tag == "table":
                self._flush()
                self._table(child)
            elif tag == "br":
                self._buffer.append("\n")
            elif tag in _BLOCK_TAGS:
                self._flush()
                self._inline(child.text)
                self._children(child)
                self._flush()
            elif tag:
                self._inline(child.text)
                self._children(child)
            self._inline(child.tail)

    def _inline(self, text: str | None) -> None:
        if text:
            self._buffer.append(_SPACE_RUN.sub(" ", text))

    def _flush(self) -> None:
        text = tidy("".join(self._buffer))
        self._buffer.clear()
        if text:
            self.blocks.append(self.headings.block(text))

    def _pre(self, element: etree._Element) -> None:
        text = tidy("".join(element.itertext()), preformatted=True)
        hints = " ".join(f"{e.get('class', '')} {e.tag}" for e in element.iter(etree.Element))
        if text.strip():
            self.blocks.append(self.headings.block(text, "code" if _CODE_HINT.search(hints) else "text"))

    def _table(self, table: etree._Element) -> None:
        caption = table.find("caption")
        if caption is not None and _flat_text(caption):
            self.blocks.append(self.headings.block(_flat_text(caption)))
        rows = list(table.xpath("./tr | ./thead/tr | ./tbody/tr | ./tfoot/tr"))
        cells = [[(cell.tag, _flat_text(cell)) for cell in row.xpath("./th | ./td")] for row in rows]
        cells = [row for row in cells if any(text for _, text in row)]
        if not cells:
            return
        # The header is the first all-<th> row; a title row spanning the table may come before it.
        at = next((i for i, row in enumerate(cells[:3]) if len(row) >= 2 and all(tag == "th" for tag, _ in row)), None)
        if at is None:
            lines = [_row_line(row) for row in cells]
        else:
            header = [text for _, text in cells[at]]
            body = [[text for _, text in row] for row in cells[at + 1 :]]
            lines = [_row_line(row) for row in cells[:at]] + table_lines(body, header)
        lines = [line for line in lines if line]
        if lines:
            self.blocks.append(self.headings.block("\n".join(lines), "table" if len(lines) > 1 else "text"))


def _row_line(row: list[tuple[str, str]]) -> str:
    """A row without a header row: 'label: values' when it starts with a header cell, else 'a | b'."""
    values = [text for _, text in row if text]
    if len(values) >= 2 and row[0][0] == "th" and row[0][1]:
        return f"{values[0]}: {' | '.join(values[1:])}"
    return " | ".join(values)


def _flat_text(element: etree._Element) -> str:
    return tidy(_SPACE_RUN.sub(" ", " ".join(element.itertext())))
