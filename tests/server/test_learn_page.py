"""`/learn` and `kb explain`: the toy model as a page (no login) and a command."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from typer.testing import CliRunner

from kb.cli.main import app as cli_app


def _svgs(html: str) -> list[str]:
    parts, start = [], 0
    while (begin := html.find("<svg", start)) != -1:
        end = html.index("</svg>", begin) + len("</svg>")
        parts.append(html[begin:end])
        start = end
    return parts


def test_learn_page_needs_no_login_and_draws_both_graphs_and_the_plot(client):
    response = client.get("/learn")
    assert response.status_code == 200
    svgs = _svgs(response.text)
    assert len(svgs) == 3
    for svg in svgs[:2]:
        root = ET.fromstring(svg)
        edges = [el for el in root.iter() if "edge" in (el.get("class") or "").split()]
        nodes = [el for el in root.iter() if "node" in (el.get("class") or "").split()]
        assert len(edges) == 16 and len(nodes) == 8


def test_learn_page_retrains_on_the_users_sequence(client):
    response = client.get("/learn", params={"sequence": "0101010101", "steps": "30"})
    assert response.status_code == 200
    assert "0101010101" in response.text


def test_learn_page_explains_bad_input_and_still_shows_the_default_model(client):
    response = client.get("/learn", params={"sequence": "01<b>2</b>", "steps": "10"})
    assert response.status_code == 400
    assert "only 0 and 1" in response.text
    assert "<b>2</b>" not in response.text
    assert len(_svgs(response.text)) == 3


def test_learn_page_bounds_the_number_of_steps(client):
    response = client.get("/learn", params={"steps": "5000"})
    assert response.status_code == 400
    assert "1000" in response.text


def test_learn_page_speaks_chinese_when_asked(client):
    response = client.get("/learn", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "语言模型" in response.text and "重新训练" in response.text


def test_kb_explain_prints_the_table_and_the_sample():
    result = CliRunner().invoke(cli_app, ["explain", "--steps", "20"])
    assert result.exit_code == 0, result.output
    assert "111" in result.output and "P(next token = 1 | state)" in result.output


def test_kb_explain_refuses_a_non_binary_sequence():
    result = CliRunner().invoke(cli_app, ["explain", "--sequence", "1012"])
    assert result.exit_code == 2
    assert "only 0 and 1" in result.output
