"""Readers: every messy real-world file reads with text or fails with a clear reason; generated edge cases too."""

from __future__ import annotations

import codecs
import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

import docx
import pytest

from kb.errors import KBError, Unprocessable, UnsupportedMedia
from kb.ingest import ReadLimits, read_document, sniff_content_type
from kb.ingest.garble import looks_garbled
from kb.ingest.sniff import CSV, DOCX, HTML, MARKDOWN, PDF, TEXT
from tests.shared_data import require_shared_data

# ---------------------------------------------------------------------------------------------
# The messy_docs kit: one expected outcome per file.


@dataclass(frozen=True)
class Reads:
    content_type: str
    contains: tuple[str, ...]
    absent: tuple[str, ...] = ()
    warning: str | None = None


@dataclass(frozen=True)
class Fails:
    error: type[KBError]
    words: tuple[str, ...]


MESSY = {
    "docx_blank.docx": Fails(Unprocessable, ("blank", "no text")),
    "docx_comments.docx": Reads(DOCX, ("Document text", "Some text worthy of note.", "Paragraph 7")),
    "docx_headers-footers-sections.docx": Reads(
        DOCX, ("section without header of its own",), absent=("Header for section-1",)
    ),
    "docx_images-only.docx": Fails(Unprocessable, ("only images", "no text")),
    "docx_page-breaks-in-runs.docx": Reads(
        DOCX, ("Page break here>><<followed by more text.", "Two page>><<breaks>><<in one run.")
    ),
    "docx_paragraphs-tables-footnotes.docx": Reads(
        DOCX, ("Lorem ipsum dolor sit amet", "Text before", "Donec semper facilisis")
    ),
    "docx_tables-merged-cells.docx": Reads(DOCX, ("1 | 2 | 3", "4 | 6")),
    "html_ietf-draft.html": Reads(HTML, ("remoteStorage", "bearer tokens")),
    "html_wikipedia_list-of-time-loop-films.html": Reads(
        HTML,
        ("Film: Groundhog Day; Year: 1993; Description: Self-centered", "time loops"),
        absent=("Jump to navigation", "Privacy policy", "Personal tools"),
    ),
    "html_wikipedia_mozilla.html": Reads(
        HTML,
        ("Mozilla is a free-software community", "Firefox"),
        absent=("[edit]", "Privacy policy", "Navigation menu"),
    ),
    "html_zh_qq-news_charset-mislabel.html": Reads(
        HTML, ("人工智能公司DeepMind", "可微神经计算机"), absent=("腾讯招聘", "返回顶部")
    ),
    "html_zh_youth-news.html": Reads(HTML, ("出国前后关注点大不同", "李博灏")),
    "pdf_acroform-fields.pdf": Reads(PDF, ("Example for a Form", "Nationality")),
    "pdf_arabic-rtl.pdf": Reads(PDF, ("habibi", "حَبيبي")),
    "pdf_broken-tounicode_czech.pdf": Reads(PDF, ("Peněžní prostředky na účtech",)),
    "pdf_cjk_chinese_broken-cmap.pdf": Reads(PDF, ("Buyer：黎荣",)),
    "pdf_cjk_chinese_contract-line.pdf": Reads(PDF, ("甲方：中国饮料有限公司（盖章）",)),
    "pdf_cjk_japanese.pdf": Reads(PDF, ("みんなのおのおののなかのすべてですから",)),
    "pdf_corrupt-stream_zen-of-python.pdf": Reads(
        PDF, ("Beautiful is better than ugly.", "Namespaces are one honking great idea")
    ),
    "pdf_encrypted-empty-password_polish-invoice.pdf": Reads(PDF, ("Faktura nr FV 1/2021",)),
    "pdf_encrypted_aes256.pdf": Fails(Unprocessable, ("password-protected", "remove the password")),
    "pdf_encrypted_user-password.pdf": Fails(Unprocessable, ("password-protected", "remove the password")),
    "pdf_google-docs-export.pdf": Reads(PDF, ("Example document", "Beautiful is better than ugly.")),
    "pdf_image-only_photo.pdf": Fails(Unprocessable, ("scanned", "no text layer", "OCR")),
    "pdf_malformed_no-startxref.pdf": Reads(PDF, ("Hello", "World"), warning="damaged"),
    "pdf_normal_4-pages.pdf": Reads(PDF, ("Hello, here is some text without a meaning.",)),
    "pdf_normal_minimal-document.pdf": Reads(PDF, ("Lorem ipsum dolor sit amet",)),
    "pdf_scanned-simulated_antarctica.pdf": Fails(Unprocessable, ("scanned", "no text layer", "OCR")),
    "pdf_scanned_jbig2.pdf": Fails(Unprocessable, ("scanned", "no text layer")),
    "pdf_toc-outline-links.pdf": Reads(PDF, ("Contents", "Hello, here is some text without a meaning.")),
    "pdf_truncated_4-pages.pdf": Fails(Unprocessable, ("damaged or incomplete",)),
    "pdf_two-column.pdf": Reads(PDF, ("Two-Column Document with Lorem Ipsum",)),
}


def _messy(name: str) -> bytes:
    return require_shared_data("messy_docs", name).read_bytes()


def _text(doc) -> str:
    return "\n".join(block.text for block in doc.blocks)


def test_every_messy_file_has_an_expected_outcome():
    folder = require_shared_data("messy_docs")
    inputs = {p.name for p in folder.iterdir() if p.suffix in (".pdf", ".docx", ".html")}
    assert inputs == set(MESSY)


@pytest.mark.parametrize("name", sorted(MESSY))
def test_messy_file_reads_or_fails_clearly(name):
    expected = MESSY[name]
    data = _messy(name)
    if isinstance(expected, Fails):
        with pytest.raises(expected.error) as caught:
            read_document(data, name)
        for word in expected.words:
            assert word in caught.value.message
        assert name in caught.value.message
        return
    doc = read_document(data, name)
    assert doc.content_type == expected.content_type
    text = _text(doc)
    for snippet in expected.contains:
        assert snippet in text
    for snippet in expected.absent:
        assert snippet not in text
    if expected.warning:
        assert any(expected.warning in w for w in doc.warnings)
    else:
        assert doc.warnings == []


def test_pdf_blocks_keep_their_page_numbers():
    doc = read_document(_messy("pdf_normal_4-pages.pdf"), "four.pdf")
    assert sorted({block.page for block in doc.blocks}) == [1, 2, 3, 4]


def test_pdf_whose_fonts_garble_the_text_is_recovered_not_returned_as_mojibake():
    doc = read_document(_messy("pdf_broken-tounicode_czech.pdf"), "czech.pdf")
    assert "3HQ" not in _text(doc)


def test_html_declaring_gb2312_but_written_in_utf8_is_decoded_as_utf8():
    doc = read_document(_messy("html_zh_qq-news_charset-mislabel.html"), "qq.html")
    assert doc.title and doc.title.startswith("DeepMind新电脑已可利用记忆自学")
    assert "\ufffd" not in _text(doc)


def test_wikipedia_headings_become_heading_blocks_with_paths():
    doc = read_document(_messy("html_wikipedia_mozilla.html"), "mozilla.html")
    headings = {block.text: block for block in doc.blocks if block.kind == "heading"}
    assert {"History", "Software", "Firefox"} <= set(headings)
    firefox_text = next(b for b in doc.blocks if b.kind == "text" and "Firefox" in b.heading_path)
    assert firefox_text.heading_path[-2:] == ("Software", "Firefox")


def test_docx_merged_cells_are_not_repeated():
    doc = read_document(_messy("docx_tables-merged-cells.docx"), "merged.docx")
    tables = [block.text for block in doc.blocks if block.kind == "table"]
    assert tables[1].split("\n")[1] == "4 | 6"  # "4" spans two columns of the second row
    assert tables[3].split("\n")[1:] == ["4 | 6", "9"]  # a 2x2 merge shows once


# ---------------------------------------------------------------------------------------------
# Generated inputs.


def make_pdf(pages: list[str | None]) -> bytes:
    """A minimal valid PDF; each page shows its string in Helvetica, or nothing when None."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        stream = "" if text is None else f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
        content = len(objects)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {content} 0 R >>"
        )
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def make_docx(build) -> bytes:
    document = docx.Document()
    build(document)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def test_empty_file_is_reported_as_empty():
    with pytest.raises(Unprocessable, match="empty"):
        read_document(b"", "notes.txt")


def test_whitespace_only_text_has_no_text():
    with pytest.raises(Unprocessable, match="no text"):
        read_document(b" \n\n\t \n", "notes.txt")


def test_pdf_page_without_text_becomes_a_warning_not_a_failure():
    doc = read_document(make_pdf(["Hello page one.", None, "Third page text."]), "gen.pdf")
    assert [(b.page, b.text) for b in doc.blocks] == [(1, "Hello page one."), (3, "Third page text.")]
    assert doc.warnings == ["No text found on page 2 (scanned images?); that content is not searchable."]


def test_pdf_with_a_page_tree_loop_does_not_hang():
    looped = make_pdf(["Loop"]).replace(b"/Kids [5 0 R]", b"/Kids [2 0 R 5 0 R]").replace(b"/Count 1", b"/Count 2")
    doc = read_document(looped, "loop.pdf")
    assert "Loop" in _text(doc)
    assert any("damaged" in w for w in doc.warnings)


def test_pdf_decompression_bomb_is_refused_without_expanding_it():
    squeezer = zlib.compressobj(9)
    payload = b"".join(squeezer.compress(b"0 0 m " * 200_000) for _ in range(80)) + squeezer.flush()  # ~96 MB
    plain = make_pdf(["Hello bomb"])
    stream = b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(payload), payload)
    bomb = plain.replace(b"<< /Length 41 >>\nstream\nBT /F1 12 Tf 72 720 Td (Hello bomb) Tj ET\nendstream", stream)
    assert bomb != plain and len(bomb) < 512 * 1024
    with pytest.raises(Unprocessable, match="too large when decompressed") as caught:
        read_document(bomb, "bomb.pdf")
    assert caught.value.code == "decompression_bomb"


def test_pdf_reading_stops_at_the_page_limit_with_a_warning():
    doc = read_document(make_pdf(["one", "two", "three"]), "long.pdf", limits=ReadLimits(max_pages=2))
    assert [b.text for b in doc.blocks] == ["one", "two"]
    assert "Only the first 2 of 3 pages were read." in doc.warnings


def test_pdf_reading_is_bounded_in_time():
    with pytest.raises(Unprocessable, match="took longer than 0 s"):
        read_document(make_pdf(["one", "two"]), "slow.pdf", limits=ReadLimits(max_seconds=0))


def test_garble_detector_flags_broken_font_output_but_not_real_writing():
    assert looks_garbled("3HQČåQt\x03SURVWĜHGN\\\x03QD\x03~þWHFK")  # pypdf on the Czech file
    assert looks_garbled("ISSUE Date˖2019-4-25 Buyer˖哾㦓")  # pypdf on the Chinese invoice
    assert looks_garbled("ɹɹং Θͨ͘͠ͱ͍;ݱ৅͸၊ఆ͞Εͨ༗ަػྲྀి౯ͷͻͱͭͷ੨͍র໌Ͱ͢")  # pypdf on the Japanese poem
    kits = [require_shared_data("squad_dev_kit", "docs"), require_shared_data("cmrc_dev_kit", "docs")]
    paragraphs = [p for kit in kits for f in sorted(kit.glob("*.md")) for p in f.read_text("utf-8").split("\n\n")]
    assert len(paragraphs) > 1500
    assert [p[:40] for p in paragraphs if looks_garbled(p)] == []
    assert not looks_garbled("Peněžní prostředky na účtech. Příliš žluťoučký kůň. حَبيبي habibi. みんなのおのおの")


def _zip_with_declared_size(member: str, payload: bytes, declared: int) -> bytes:
    """A ZIP whose headers claim `member` expands to `declared` bytes (a zip bomb's signature)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr(member, payload)
    data = bytearray(buffer.getvalue())
    actual = struct.pack("<I", len(payload))
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            if data[start + offset : start + offset + 4] == actual:
                data[start + offset : start + offset + 4] = struct.pack("<I", declared)
            start += 4
    return bytes(data)


def test_docx_zip_bomb_declaring_gigabytes_is_refused_before_opening():
    bomb = _zip_with_declared_size("word/document.xml", b"<w:document/>" * 100, declared=4_000_000_000)
    assert len(bomb) < 4096
    with pytest.raises(Unprocessable, match="too large when decompressed") as caught:
        read_document(bomb, "bomb.docx")
    assert caught.value.code == "zip_bomb"


def test_docx_part_with_an_extreme_compression_ratio_is_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"\0" * (20 * 1024 * 1024))
    assert len(buffer.getvalue()) < 64 * 1024
    with pytest.raises(Unprocessable, match="expands"):
        read_document(buffer.getvalue(), "ratio.docx")


def test_docx_headings_paragraphs_and_tables_keep_body_order():
    def build(document):
        document.add_heading("Refunds", level=1)
        document.add_paragraph("Refunds are paid within 14 days.")
        document.add_heading("Fees", level=2)
        table = document.add_table(rows=3, cols=3)
        for row, values in zip(
            table.rows, [("Plan", "Price", "Period"), ("Basic", "10", "month"), ("Pro", "100", "year")], strict=True
        ):
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value
        merged = table.cell(2, 1).merge(table.cell(2, 2))
        merged.text = "100 per year"
        document.add_paragraph("Prices include VAT.")

    doc = read_document(make_docx(build), "policy.docx")
    summary = [(b.kind, b.text, b.heading_path, b.level) for b in doc.blocks]
    assert summary == [
        ("heading", "Refunds", (), 1),
        ("text", "Refunds are paid within 14 days.", ("Refunds",), 0),
        ("heading", "Fees", ("Refunds",), 2),
        ("table", "Plan: Basic; Price: 10; Period: month\nPlan: Pro; Price: 100 per year", ("Refunds", "Fees"), 0),
        ("text", "Prices include VAT.", ("Refunds", "Fees"), 0),
    ]


def test_damaged_docx_says_so():
    data = make_docx(lambda d: d.add_paragraph("Hello"))
    with pytest.raises(Unprocessable, match="damaged or incomplete"):
        read_document(data[: len(data) // 2], "cut.docx")


CHINESE = "知识库问答系统可以回答用户的问题。\n\n第二段：深度学习使用多层神经网络。"


@pytest.mark.parametrize(
    ("encoded", "label"),
    [
        (CHINESE.encode("gbk"), "gbk"),
        (CHINESE.encode("gb18030"), "gb18030"),
        ("你好，世界".encode("gbk"), "short gbk"),
        (codecs.BOM_UTF8 + CHINESE.encode("utf-8"), "utf-8 with bom"),
        (CHINESE.encode("utf-16"), "utf-16 with bom"),
        (CHINESE.encode("utf-16-le"), "utf-16-le without bom"),
        (codecs.BOM_UTF16_BE + CHINESE.encode("utf-16-be"), "utf-16-be with bom"),
    ],
)
def test_text_encodings_are_detected(encoded, label):
    doc = read_document(encoded, "notes.txt")
    expected = "你好，世界" if label == "short gbk" else CHINESE
    assert _text(doc) == expected.replace("\n\n", "\n")
    assert doc.content_type == TEXT


def test_latin1_text_is_decoded():
    doc = read_document("Café crème, naïve résumé — déjà vu.".encode("cp1252"), "notes.txt")
    assert "Café crème" in _text(doc)


def test_binary_garbage_is_unsupported_and_lists_accepted_types():
    with pytest.raises(UnsupportedMedia) as caught:
        read_document(bytes(range(256)) * 40, "blob.bin")
    assert "Accepted types: PDF, Word (.docx), plain text, Markdown, HTML and CSV." in caught.value.message


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "an image"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 64, "legacy Office file"),
    ],
)
def test_known_unsupported_formats_are_named(data, words):
    with pytest.raises(UnsupportedMedia, match=words):
        read_document(data, "upload.docx")


def test_a_program_renamed_to_pdf_is_refused_as_not_a_pdf():
    program = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(range(256)) * 8  # a Windows .exe
    with pytest.raises(UnsupportedMedia) as caught:
        read_document(program, "invoice.pdf")
    assert caught.value.message.startswith('"invoice.pdf" is not a PDF: its content is a binary file')
    assert caught.value.code == "not_what_its_name_says"


def test_xlsx_is_named_as_a_workbook():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(UnsupportedMedia, match="Excel workbook"):
        read_document(buffer.getvalue(), "sheet.xlsx")


def test_csv_rows_become_blocks_with_their_header():
    data = b"name;city;age\nAda;London;36\nLinus;Helsinki;\n"
    doc = read_document(data, "people.csv")
    assert doc.content_type == CSV
    assert [b.text for b in doc.blocks] == ["name: Ada; city: London; age: 36", "name: Linus; city: Helsinki"]


@pytest.mark.parametrize(
    "header",
    ["question,answer", "Q,A", "问题,答案", "Question,Answer"],
)
def test_two_column_question_answer_csv_becomes_qa_blocks(header):
    data = f'{header}\nWhat is kb?,"A knowledge base, self-hosted."\n退款多久到账？,14天内。\n'.encode()
    doc = read_document(data, "faq.csv")
    assert [(b.kind, b.text, b.answer) for b in doc.blocks] == [
        ("qa", "What is kb?", "A knowledge base, self-hosted."),
        ("qa", "退款多久到账？", "14天内。"),
    ]


def test_markdown_keeps_code_and_tables_whole_under_their_headings():
    source = (
        "# Guide\n\nIntro text.\n\n## Install\n\n```bash\npip install kb\n  kb serve\n```\n\n"
        "## Limits\n\n| name | value |\n|---|---|\n| upload | 100 MB |\n\n- one\n- two\n"
    )
    doc = read_document(source.encode(), "guide.md")
    assert doc.title == "Guide"
    summary = [(b.kind, b.text, b.heading_path) for b in doc.blocks]
    assert summary == [
        ("heading", "Guide", ()),
        ("text", "Intro text.", ("Guide",)),
        ("heading", "Install", ("Guide",)),
        ("code", "```bash\npip install kb\n  kb serve\n```", ("Guide", "Install")),
        ("heading", "Limits", ("Guide",)),
        ("table", "| name | value |\n|---|---|\n| upload | 100 MB |", ("Guide", "Limits")),
        ("text", "- one\n- two", ("Guide", "Limits")),
    ]


HTML_WITH_CHROME = """<!doctype html><html><head><title>Refund policy - Shop</title>
<style>.x{color:red}</style><script>var tracking = 1;</script></head><body>
<header><a href="/">Home</a> <a href="/shop">Shop</a></header>
<nav class="menu"><ul><li><a href="/a">Products</a></li><li><a href="/b">Support</a></li></ul></nav>
<div class="sidebar"><a href="/x">Related post one</a><a href="/y">Related post two</a></div>
<main><h1>Refund policy</h1><p>Refunds are paid within <b>14 days</b> of the request.</p>
<h2>How to ask</h2><p>Write to us<br>with your order number.</p>
<pre><code class="language-bash">curl -X POST /refunds
  --data order=1</code></pre>
<table><tr><th>Plan</th><th>Refund</th></tr><tr><td>Basic</td><td>full</td></tr></table></main>
<footer>Copyright 2024 Shop Inc.</footer><div style="display:none">hidden tracking text</div></body></html>"""


def test_html_keeps_main_content_and_drops_navigation_scripts_and_footers():
    doc = read_document(HTML_WITH_CHROME.encode(), "page.html")
    text = _text(doc)
    for junk in ("Products", "Related post", "Copyright", "tracking", "color:red", "Home"):
        assert junk not in text
    summary = [(b.kind, b.text, b.heading_path) for b in doc.blocks]
    assert summary == [
        ("heading", "Refund policy", ()),
        ("text", "Refunds are paid within 14 days of the request.", ("Refund policy",)),
        ("heading", "How to ask", ("Refund policy",)),
        ("text", "Write to us\nwith your order number.", ("Refund policy", "How to ask")),
        ("code", "curl -X POST /refunds\n  --data order=1", ("Refund policy", "How to ask")),
        ("text", "Plan: Basic; Refund: full", ("Refund policy", "How to ask")),
    ]
    assert doc.title == "Refund policy - Shop"


def test_html_in_a_declared_legacy_charset_is_decoded_with_it():
    page = (
        '<html><head><meta charset="gb2312"><title>退款</title></head><body><p>退款将在十四天内到账。</p></body></html>'
    )
    doc = read_document(page.encode("gbk"), "page.html")
    assert _text(doc) == "退款将在十四天内到账。"


@pytest.mark.parametrize(
    ("data", "filename", "expected"),
    [
        (make_pdf(["x"]), "report.txt", PDF),
        (b"Just some notes.\nNothing more.", "report.pdf", TEXT),
        (b"a,b\n1,2\n3,4\n", "data.txt", TEXT),
        (b"a,b\n1,2\n3,4\n", "data.csv", CSV),
        (b"a,b\n1,2\n3,4\n", "data", CSV),
        (b"# Title\n\nSome text.", "README", MARKDOWN),
        (b"# Title\n\nSome text.", "notes.txt", TEXT),
        (b"<!DOCTYPE html><html><body><p>x</p></body></html>", "page.md", HTML),
        (b"<p>Hello</p>", "page.html", HTML),
        (b"Use <b>bold</b> here.", "notes.md", MARKDOWN),
    ],
)
def test_sniffing_trusts_content_and_uses_the_extension_only_as_a_hint(data, filename, expected):
    assert sniff_content_type(data, filename) == expected
