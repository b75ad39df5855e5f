"""`kb eval run`: a set file run against a dataset prints its totals, and `--min-hit5` gates the exit status."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from kb.cli.main import app as cli
from kb.worker.loop import Worker
from tests.pipeline.eval_support import kit_slice, wait_for_collections
from tests.pipeline.support import fake_registry


@pytest.fixture
def set_file(api, rt, shared_data, tmp_path):
    dataset_id, questions = kit_slice(api, shared_data, name="kit")
    Worker(rt).run_until_idle()
    wait_for_collections(api, dataset_id)
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(json.dumps(q) for q in questions[:12]) + '\n{"question": "no answer here"}\n')
    return path


def _eval(rt, *args: str):
    env = {
        "KB_DATABASE_URL": rt.settings.database_url,
        "KB_DATA_DIR": str(rt.settings.data_dir),
        "KB_LOG_LEVEL": "WARNING",
    }
    runner = CliRunner(env={**env, "KB_EMBED_MODEL": "hash", "KB_CHAT_MODEL": "echo"})
    return runner.invoke(cli, ["eval", "run", *args], obj={"registry": fake_registry(rt.settings)}, terminal_width=200)


def test_eval_run_prints_the_totals_and_names_refused_lines(rt, set_file):
    result = _eval(rt, "--dataset", "kit", "--set", str(set_file), "--mode", "fulltext")
    assert result.exit_code == 0, result.output
    assert "hit@5" in result.stdout and "questions counted" in result.stdout
    assert "line 13" in result.stderr and "no expected answer" in result.stderr


def test_eval_run_exits_1_when_hit5_is_below_the_gate_and_0_when_above(rt, set_file):
    failing = _eval(rt, "-d", "kit", "--set", str(set_file), "--min-hit5", "1.01")
    assert failing.exit_code == 1, failing.output
    assert "below --min-hit5" in failing.stderr
    passing = _eval(rt, "-d", "kit", "--set", str(set_file), "--min-hit5", "0.0")
    assert passing.exit_code == 0, passing.output


def test_eval_run_on_an_unknown_dataset_says_so(rt, set_file):
    result = _eval(rt, "-d", "nope", "--set", str(set_file))
    assert result.exit_code == 2 and "no dataset named 'nope'" in result.stderr
