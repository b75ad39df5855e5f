"""Stop strings and tool-call blocks are cut from streamed text however the pieces are split."""

from __future__ import annotations

import itertools

import pytest

from kb.ml.stops import AnswerAssembler, StopMatcher, parse_json_tool_calls, parse_tool_calls
from kb.ml.types import GenerationParams


def run(pieces: list[str], stop: list[str], tools: bool = False) -> tuple[list[str], object]:
    assembler = AnswerAssembler(stop, tools_enabled=tools)
    shown = [assembler.feed(piece) for piece in pieces]
    last, completion = assembler.finish(10, len(pieces), "length")
    return [s for s in [*shown, last] if s], completion


def splits(text: str, cuts: int) -> list[list[str]]:
    """Every way of cutting `text` into at most cuts+1 pieces."""
    result = []
    for points in itertools.combinations(range(1, len(text)), cuts):
        bounds = (0, *points, len(text))
        result.append([text[a:b] for a, b in zip(bounds, bounds[1:])])
    return result


@pytest.mark.parametrize("pieces", splits("Hello world END tail", 2))
def test_stop_string_split_anywhere_never_leaks(pieces):
    shown, completion = run(pieces, ["END"])
    assert "".join(shown) == "Hello world "
    assert completion.text == "Hello world "
    assert completion.finish_reason == "stop"
    assert not any("E" in piece for piece in shown)


def test_prefix_of_stop_is_held_back_until_it_cannot_complete():
    matcher = StopMatcher(["</answer>"])
    assert matcher.feed("the answer is 4 </") == "the answer is 4 "
    assert matcher.feed("ans") == ""
    assert matcher.feed("wer?") == "</answer?"
    assert matcher.hit is None


def test_held_back_tail_is_released_at_the_end_of_the_stream():
    shown, completion = run(["price: 5 ", "EN"], ["END"])
    assert "".join(shown) == "price: 5 EN"
    assert completion.finish_reason == "length"


def test_earliest_of_several_stop_strings_wins():
    shown, completion = run(["a b ", "STOP2 c STOP1"], ["STOP1", "STOP2"])
    assert "".join(shown) == "a b "


def test_overlapping_stop_prefixes_keep_the_longest_possible_start():
    matcher = StopMatcher(["aab"])
    assert matcher.feed("xaa") == "x"
    assert matcher.feed("a") == "a"  # "aaa": only the last "aa" can still start "aab"
    assert matcher.feed("b") == ""
    assert matcher.hit == "aab"


def test_text_after_a_stop_is_ignored():
    assembler = AnswerAssembler(["\n\n"])
    assert assembler.feed("one\n\ntwo") == "one"
    assert assembler.stopped
    assert assembler.feed("three") == ""


def test_empty_stop_strings_are_ignored():
    shown, completion = run(["abc"], ["", "zz"])
    assert "".join(shown) == "abc"


@pytest.mark.parametrize(
    "pieces", splits('Let me look.<tool_call>\n{"name": "search", "arguments": {"q": "x"}}\n</tool_call>', 2)[::37]
)
def test_tool_call_blocks_become_tool_calls_and_never_stream(pieces):
    shown, completion = run(pieces, [], tools=True)
    assert "".join(shown) == "Let me look."
    assert completion.finish_reason == "tool_calls"
    assert completion.tool_calls[0]["type"] == "function"
    assert completion.tool_calls[0]["function"] == {"name": "search", "arguments": '{"q": "x"}'}
    assert completion.tool_calls[0]["id"].startswith("call_")


def test_tool_call_markup_is_plain_text_when_no_tools_were_offered():
    shown, completion = run(['<tool_call>{"name": "x"}</tool_call>'], [])
    assert completion.text == '<tool_call>{"name": "x"}</tool_call>' and not completion.tool_calls


def test_unparsable_tool_call_is_shown_as_text():
    shown, completion = run(["ok <tool_call>not json</tool_call>"], [], tools=True)
    assert completion.text == "ok <tool_call>not json</tool_call>"
    assert "".join(shown) == completion.text
    assert completion.finish_reason == "length" and not completion.tool_calls


def test_several_tool_calls_and_a_missing_closing_tag_are_parsed():
    calls, leftover = parse_tool_calls(
        '<tool_call>{"name": "a", "arguments": {}}</tool_call>\n<tool_call>{"name": "b", "arguments": {"n": 1}}'
    )
    assert [c["function"]["name"] for c in calls] == ["a", "b"]
    assert calls[1]["function"]["arguments"] == '{"n": 1}'
    assert leftover == ""


def test_a_stray_byte_before_a_whole_character_never_shows_as_a_replacement_character():
    from kb.ml.decoding import IncrementalDetokenizer

    class Bytes:
        def decode(self, ids, skip_special_tokens=True):
            return bytes(ids).decode("utf-8", errors="replace")

    detokenizer, assembler = IncrementalDetokenizer(Bytes()), AnswerAssembler([])
    ids = [*"重点上".encode(), 0xE6, *"浩订都".encode()]  # 0xE6 starts a character that never completes
    shown = "".join(assembler.feed(detokenizer.add(token)) for token in ids)
    last, completion = assembler.finish(1, len(ids), "stop")
    assert shown + last == completion.text == "重点上浩订都"


SEARCH_TOOL = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
JSON_CALL = '```json\n{"name": "search", "arguments": {"query": "pgvector"}}\n```'


def run_with_tools(pieces: list[str], tools: list[dict] = SEARCH_TOOL) -> tuple[list[str], object]:
    assembler = AnswerAssembler.for_params(GenerationParams(tools=tools))
    shown = [assembler.feed(piece) for piece in pieces]
    last, completion = assembler.finish(10, len(pieces), "stop")
    return [s for s in [*shown, last] if s], completion


@pytest.mark.parametrize("pieces", splits(JSON_CALL, 2)[::97])
def test_a_reply_that_is_only_a_fenced_json_call_of_an_offered_tool_becomes_a_tool_call(pieces):
    shown, completion = run_with_tools(pieces)
    assert shown == [] and completion.text == "" and completion.finish_reason == "tool_calls"
    [call] = completion.tool_calls
    assert call["function"] == {"name": "search", "arguments": '{"query": "pgvector"}'}


def test_bare_json_calls_and_lists_of_them_are_tool_calls_too():
    two = '[{"name": "search", "arguments": {"query": "a"}}, {"name": "search", "parameters": {"query": "b"}}]'
    assert len(parse_json_tool_calls(two, ("search",))) == 2
    assert parse_json_tool_calls('  {"name": "search", "arguments": "{}"}\n', ("search",))[0]["function"]["name"]


@pytest.mark.parametrize(
    "reply",
    [
        '{"name": "delete_everything", "arguments": {}}',  # not an offered tool
        '```json\n{"city": "Paris"}\n```',  # JSON, but no call
        'Here it is: ```json\n{"name": "search", "arguments": {}}\n```',  # text around it
        '```json\n{"name": "search", "arguments": {}}\n``` and more',
        "{not json",
    ],
)
def test_json_that_is_not_a_whole_reply_calling_an_offered_tool_stays_text(reply):
    shown, completion = run_with_tools([reply[:5], reply[5:]])
    assert "".join(shown) == reply == completion.text and completion.tool_calls == []
    assert completion.finish_reason == "stop"


def test_plain_text_with_tools_offered_streams_at_once():
    assembler = AnswerAssembler.for_params(GenerationParams(tools=SEARCH_TOOL))
    assert assembler.feed("  ") == "" and assembler.feed("Paris is") == "  Paris is"
    assert assembler.feed(' {"name": "search"}') == ' {"name": "search"}'
