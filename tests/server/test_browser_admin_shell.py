"""The admin shell in a real browser: log in, dashboard, language switch, log out, phone width, CSP."""

from __future__ import annotations

import pytest

from tests.browser_support import log_in, screenshot

pytestmark = pytest.mark.browser


def test_admin_logs_in_sees_the_dashboard_switches_to_chinese_and_logs_out(page):
    page.goto("/admin")
    page.wait_for_url("**/admin/login?next=/admin")
    log_in(page)
    assert page.locator("h1").inner_text() == "Overview"
    assert page.locator("[data-count=datasets]").inner_text() == "0"
    screenshot(page, "admin-dashboard")

    page.click("a[data-lang=zh]")
    page.wait_for_url("**/admin?lang=zh")
    assert page.locator("h1").inner_text() == "概览"
    page.goto("/admin")  # the choice sticks without the query parameter
    assert page.locator("h1").inner_text() == "概览"
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    screenshot(page, "admin-dashboard-zh")

    page.click("form.logout button")
    page.wait_for_url("**/admin/login")
    assert page.locator("h1").inner_text() == "管理员登录"
    page.goto("/admin")
    page.wait_for_url("**/admin/login?next=/admin")


def test_a_wrong_password_shows_the_reason_on_the_form(page):
    page.goto("/admin/login")
    page.fill("#password", "not the password")
    page.click("form[action='/admin/login'] button[type=submit]")
    assert page.locator("[role=alert]").inner_text() == "Wrong password."
    screenshot(page, "admin-login-refused")


def test_the_dashboard_fits_a_phone_screen(page):
    log_in(page)
    page.set_viewport_size({"width": 390, "height": 844})
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
    assert page.locator("nav.admin-nav").is_visible()
    screenshot(page, "admin-dashboard-phone")


def test_inline_script_is_blocked_by_the_csp_and_reported(page, page_problems):
    page.goto("/admin/login")
    with page.expect_console_message(lambda message: "Content Security Policy" in message.text):
        page.evaluate(
            """() => {
                const script = document.createElement("script");
                script.textContent = "document.title = 'inline ran'";
                document.body.appendChild(script);
            }"""
        )
    assert page.title() != "inline ran"
    assert any("Content Security Policy" in problem for problem in page_problems), page_problems
    page_problems.clear()


def test_a_javascript_dialog_fails_the_page(page, page_problems):
    page.goto("/admin/login")
    with page.expect_event("dialog"):
        page.evaluate("() => { setTimeout(() => alert('boom'), 0); }")
    assert page_problems == ["JavaScript dialog (alert): boom"]
    page_problems.clear()


def test_a_missing_stylesheet_fails_the_page(page, page_problems):
    page.goto("/admin/login")
    with page.expect_console_message(lambda message: "missing.css" in message.text):
        page.evaluate(
            """() => {
                const link = document.createElement("link");
                link.rel = "stylesheet";
                link.href = "/static/missing.css";
                document.head.appendChild(link);
            }"""
        )
    assert any("missing.css" in problem for problem in page_problems), page_problems
    page_problems.clear()
