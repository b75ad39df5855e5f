"""Reading evaluation sets from JSONL and CSV: good lines kept, each bad line refused with its number."""

from __future__ import annotations

import json

from kb.ingest.eval_file import MAX_ITEMS, parse_eval_file


def test_jsonl_lines_in_the_kits_format_become_items_with_their_document():
    content = (
        b'{"id": "x", "question": "Where is Bern?", "answers": ["Switzerland"], "doc": "squad_Bern.md"}\n'
        b"\n"
        b'{"question": "Capital?", "answer": "Bern"}\n'
    )
    parsed = parse_eval_file("set.jsonl", content)
    assert parsed.errors == []
    assert [(i.question, i.answers, i.source) for i in parsed.items] == [
        ("Where is Bern?", ["Switzerland"], "squad_Bern.md"),
        ("Capital?", ["Bern"], None),
    ]
    assert parsed.lines == [1, 3]


def test_bad_jsonl_lines_are_named_by_number_and_the_good_ones_kept():
    content = (
        b'{"question": "Q1", "answers": ["a"]}\n{"question": "Q2"}\n[1, 2]\n{oops\n{"question": "", "answers": ["a"]}\n'
    )
    parsed = parse_eval_file("set.jsonl", content)
    assert [i.question for i in parsed.items] == ["Q1"]
    messages = {e.line: e.message for e in parsed.errors}
    assert set(messages) == {2, 3, 4, 5}
    assert "no expected answer" in messages[2]
    assert "JSON object" in messages[3] and "not valid JSON" in messages[4] and "question" in messages[5]


def test_csv_answers_are_split_on_bars_and_rows_without_an_answer_are_refused_by_line():
    content = b"question,answers,source\nWhere?,Bern|the city of Bern,a.md\nWho?,,\n"
    parsed = parse_eval_file("set.csv", content)
    assert [(i.answers, i.source) for i in parsed.items] == [(["Bern", "the city of Bern"], "a.md")]
    assert [(e.line, "no expected answer" in e.message) for e in parsed.errors] == [(3, True)]


def test_a_csv_without_the_needed_columns_and_a_file_that_is_not_utf8_are_refused_whole():
    assert parse_eval_file("set.csv", b"q,a\nx,y\n").errors[0].message.startswith("the header row")
    assert parse_eval_file("set.jsonl", b"\xff\xfe\x00").errors[0].message == "the file is not UTF-8 text"


def test_a_set_stops_at_its_size_limit_saying_which_lines_were_skipped():
    content = "\n".join(json.dumps({"question": f"q{n}", "answers": ["a"]}) for n in range(MAX_ITEMS + 2)).encode()
    parsed = parse_eval_file("big.jsonl", content)
    assert len(parsed.items) == MAX_ITEMS
    assert [e.line for e in parsed.errors] == [MAX_ITEMS + 1, MAX_ITEMS + 2]
