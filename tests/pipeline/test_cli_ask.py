"""`kb ask`: the answer streamed to the terminal, then the quotes; errors a user can act on."""

from __future__ import annotations

from typer.testing import CliRunner

from kb.cli.main import app as cli
from kb.ml.registry import ModelRegistry
from kb.runtime import Runtime
from tests.answer_data import PARIS, add_knowledge, make_app, use_models
from tests.helpers import ROOT_KEY
from tests.pipeline.support import make_settings


def invoke(tmp_path, database_url, registry: ModelRegistry, *args: str):
    env = {
        "KB_DATABASE_URL": database_url,
        "KB_DATA_DIR": str(tmp_path / "data"),
        "KB_ROOT_KEY": ROOT_KEY,
        "KB_CHAT_MODEL": "echo",
        "KB_EMBED_MODEL": "hash",
        "KB_LOG_LEVEL": "WARNING",
    }
    return CliRunner(env=env).invoke(cli, list(args), obj={"registry": registry}, terminal_width=200)


def knowledge(tmp_path, database_url, db, reply: str) -> tuple[Runtime, int]:
    settings = make_settings(tmp_path, database_url)
    rt = Runtime(settings, db, ModelRegistry(settings))
    use_models(rt, [reply])
    return rt, add_knowledge(rt, "paris", PARIS)


def test_kb_ask_streams_the_answer_then_lists_the_quotes_with_the_cited_one_starred(tmp_path, database_url, db):
    rt, _ = knowledge(tmp_path, database_url, db, "It was built from 1887 to 1889 [1].")
    result = invoke(
        tmp_path, database_url, rt.registry, "ask", "--dataset", "paris", "When was the Eiffel Tower built?"
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("It was built from 1887 to 1889 [1].\n")
    rows = [line.split("│") for line in result.output.splitlines() if line.startswith("│ ")]
    numbers = [row[1].strip() for row in rows if row[1].strip() != "#"]
    numbers = [n for n in numbers if n]
    assert numbers[0] == "1*" and numbers[1:] == [str(n) for n in range(2, len(numbers) + 1)] and len(numbers) > 1
    first = next(row for row in rows if row[1].strip() == "1*")
    assert first[2].strip() == "paris.md" and "1889" in first[5]


def test_kb_ask_answers_as_an_app(tmp_path, database_url, db):
    rt, dataset_id = knowledge(tmp_path, database_url, db, "unused")
    make_app(
        rt, "strict", [dataset_id], search={"mode": "vector", "min_score": 0.99}, not_found_reply="Ask the front desk."
    )
    result = invoke(tmp_path, database_url, rt.registry, "ask", "--app", "strict", "How do volcanoes form?")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "Ask the front desk." and "Quotes" not in result.output


def test_kb_ask_names_what_is_missing(tmp_path, database_url, db):
    rt, _ = knowledge(tmp_path, database_url, db, "unused")
    result = invoke(tmp_path, database_url, rt.registry, "ask", "--dataset", "nowhere", "Why?")
    assert result.exit_code == 1 and "There is no dataset named 'nowhere'" in result.output
    result = invoke(tmp_path, database_url, rt.registry, "ask", "--app", "ghost", "Why?")
    assert result.exit_code == 1 and "There is no app named 'ghost'" in result.output
    result = invoke(tmp_path, database_url, rt.registry, "ask", "Why?")
    assert result.exit_code == 2 and "--app or --dataset" in result.output
