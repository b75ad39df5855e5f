"""The /learn page in a real browser: graphs drawn, retraining through the form, bad input explained."""

from __future__ import annotations

import pytest

from tests.browser_support import screenshot

pytestmark = pytest.mark.browser


def test_learn_page_draws_the_graphs_and_retrains_from_the_form(page):
    page.goto("/learn")
    assert page.locator("#graph-after svg .edge").count() == 16
    assert page.locator("#graph-after svg .node").count() == 8
    sample = page.locator("#sample").inner_text()
    assert len(sample) >= 20 and set(sample) <= {"0", "1"} and sample.startswith("111")
    screenshot(page, "learn")

    page.fill("input[name=sequence]", "0011001100110011")
    page.fill("input[name=steps]", "80")
    page.click(".learn-form button[type=submit]")
    page.wait_for_url("**sequence=0011001100110011**")
    assert page.locator("#sample").inner_text().startswith("001")


def test_learn_page_shows_why_a_sequence_is_refused(page, page_problems):
    page.goto("/learn")
    page.fill("input[name=sequence]", "01x1")
    page.click(".learn-form button[type=submit]")
    page.wait_for_selector("[role=alert]")
    assert "only 0 and 1" in page.locator("[role=alert]").inner_text()
    page_problems.clear()  # the page answered 400 on purpose
