"""The house rules a reviewer would otherwise have to check by eye: module and function sizes, docs made from code."""

from __future__ import annotations

import ast
import re

from kb.config import settings_table
from tests.helpers import REPO

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _python_files():
    return sorted((REPO / "kb").rglob("*.py"))


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in _python_files() if (n := p.read_text().count("\n")) > MAX_MODULE_LINES}
    assert long == {}, f"split these by responsibility: {long}"


def test_no_function_is_over_60_lines():
    long = {}
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(REPO)}:{node.lineno} {node.name}"] = length
    assert long == {}, f"split these functions: {long}"


def test_the_readme_settings_table_is_the_one_the_settings_class_makes():
    readme = (REPO / "README.md").read_text()
    found = re.search(r"<!-- settings:start[^>]*-->\n(.*?)\n<!-- settings:end -->", readme, re.S)
    assert found, "README.md has lost its settings table markers"
    assert found.group(1) == settings_table(), "the README's settings table is stale: run `python -m kb.config`"
