"""The answer renderer: Markdown to HTML on the server, sanitised, with citations as quote buttons."""

from __future__ import annotations

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from kb.http.pages.markdown import render_answer, sanitise_html
from tests.web.support import HOSTILE, assert_inert


def parse(html: str) -> HTMLParser:
    return HTMLParser(str(html))


def test_markdown_becomes_html():
    html = render_answer(
        "# Title\n\nSome **bold** and *slanted* text with `code`.\n\n- one\n- two\n\n1. first\n2. second"
    )
    tree = parse(html)
    assert tree.css_first("h1").text() == "Title"
    assert tree.css_first("strong").text() == "bold" and tree.css_first("em").text() == "slanted"
    assert tree.css_first("code").text() == "code"
    assert [li.text() for li in tree.css("ul li")] == ["one", "two"] and len(tree.css("ol li")) == 2


def test_tables_and_fenced_code_render_without_inline_styles():
    html = render_answer("| a | b |\n|--:|---|\n| 1 | 2 |\n\n```python\nx = 1 < 2\n```")
    tree = parse(html)
    assert [th.text() for th in tree.css("th")] == ["a", "b"]
    assert tree.css_first("pre code").text() == "x = 1 < 2\n"
    assert "style=" not in html and "class=" not in html  # the CSP forbids inline styles; no highlighter classes


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "[click](javascript:alert(1))",
        "[click](JaVaScRiPt:alert(1))",
        "[click](vbscript:msgbox(1))",
        "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "<a href='javascript:alert(1)'>click</a>",
        '<svg onload="alert(1)"></svg>',
        "[ref]\n\n[ref]: javascript:alert(1)",
        "![x](javascript:alert(1))",
        '<iframe src="https://example.com"></iframe>',
        "<div style='position:fixed'>x</div>",
        HOSTILE,
    ],
)
def test_hostile_text_renders_as_inert_text(hostile):
    assert_inert(str(render_answer(hostile, [1])))


def test_raw_html_is_shown_as_text_not_dropped():
    html = render_answer("Use <b>bold</b> and <script>alert(1)</script>")
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_links_may_only_go_to_http_https_or_mail():
    tree = parse(
        render_answer(
            "[web](https://example.com/a?b=1) [plain](http://example.com) [mail](mailto:a@example.com) [here](/admin/keys) [up](../x)"
        )
    )
    hrefs = [a.attributes.get("href") for a in tree.css("a")]
    assert hrefs == ["https://example.com/a?b=1", "http://example.com", "mailto:a@example.com", None, None]
    assert all(a.attributes.get("rel") == "noopener noreferrer nofollow" for a in tree.css("a"))


def test_images_become_links_that_load_nothing():
    tree = parse(render_answer("![a cat](https://example.com/cat.png)"))
    assert tree.css("img") == [] and tree.css_first("a").attributes["href"] == "https://example.com/cat.png"


def test_citations_of_known_quotes_become_buttons_in_order():
    tree = parse(render_answer("Built in 1889 [1]. Iron [2, 3] and 【1】 but not [4] nor `[1]`.", [1, 2, 3]))
    buttons = tree.css("button.cite")
    assert [b.attributes["data-quote"] for b in buttons] == ["1", "2", "3", "1"]
    assert all(b.attributes["type"] == "button" for b in buttons)
    assert "[4]" in tree.body.text() and tree.css_first("code").text() == "[1]"


def test_without_quotes_brackets_stay_text():
    html = render_answer("See [1] and [2].")
    assert "button" not in html and "See [1] and [2]." in html


def test_a_citation_inside_a_link_stays_text():
    tree = parse(render_answer("[see [1]](https://example.com)", [1]))
    assert tree.css("button") == [] and tree.css_first("a").text() == "see [1]"


def test_the_sanitiser_drops_what_the_allowlist_does_not_name():
    html = sanitise_html(
        '<p onclick="x()">a<script>alert(1)</script><button type="submit" class="cite evil" data-quote="1;x" formaction="/x">b</button>'
        '<a href="javascript:alert(1)" target="_blank">c</a><img src=x onerror=alert(1)><span style="color:red">d</span></p>'
    )
    assert html == '<p>a<button class="cite">b</button><a rel="noopener noreferrer nofollow">c</a>d</p>'
