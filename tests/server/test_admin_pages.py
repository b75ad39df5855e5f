"""The admin shell as a user reads it: dashboard contents, navigation, languages and translations."""

from __future__ import annotations

import json
import re

from starlette.routing import NoMatchFound

from kb.db.store import datasets as dataset_store
from kb.db.store import keys as key_store
from kb.http.i18n import LOCALES_DIR, catalogue
from kb.http.pages.templating import WEB_DIR
from kb.http.security.csrf import CSRF_MESSAGE
from kb.security import display_prefix, generate_api_key, hash_api_key
from kb.services import admin as admin_service


def count_of(html: str, name: str) -> int:
    match = re.search(rf'data-count="{name}">(\d+)<', html)
    assert match, f"no {name} count on the page"
    return int(match.group(1))


def test_the_dashboard_counts_what_exists_and_shows_the_configuration(admin_client, db, settings):
    empty = admin_client.get("/admin").text
    assert count_of(empty, "datasets") == 0 and "No knowledge base yet" in empty
    with db.session() as session:
        dataset_store.add_dataset(
            session, name="handbook", embed_model="minilm", embed_dim=384, embed_variant="onnx-int8"
        )
        key = generate_api_key()
        key_store.add_key(session, name="ci", prefix=display_prefix(key), key_hash=hash_api_key(key))
        revoked = key_store.add_key(session, name="old", prefix="kb-old", key_hash=hash_api_key("old"))
        key_store.revoke_key(session, revoked.id)
        session.commit()
    page = admin_client.get("/admin").text
    assert count_of(page, "datasets") == 1
    assert count_of(page, "keys") == 1, "revoked keys are not counted as active"
    assert count_of(page, "chunks") == 0
    assert f"<code>{settings.chat_model}</code>" in page and f"<code>{settings.embed_model}</code>" in page
    assert "set by KB_ADMIN_PASSWORD" in page
    assert "test-password" not in page


def has_route(app, name: str) -> bool:
    try:
        app.url_path_for(name)
    except NoMatchFound:
        return False
    return True


def test_the_navigation_links_only_sections_whose_pages_exist(admin_client, app):
    nav = re.search(r'<nav class="admin-nav".*?</nav>', admin_client.get("/admin").text, re.S).group(0)
    assert re.search(r'<a href="/admin" aria-current="page">\s*Overview\s*</a>', nav), nav
    for name, label in [
        ("admin_datasets", "Datasets"),
        ("admin_apps", "Apps"),
        ("admin_keys", "API keys"),
        ("admin_models", "Models"),
    ]:
        if has_route(app, name):
            assert re.search(rf'<a href="/admin/\w+">\s*{label}\s*</a>', nav), (label, nav)
        else:
            assert re.search(rf'<span class="nav-pending"[^>]*>\s*{label}\s*</span>', nav), (label, nav)


def test_the_language_follows_accept_language(client):
    chinese = client.get("/admin/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert '<html lang="zh-CN">' in chinese.text and "管理员登录" in chinese.text
    english = client.get("/admin/login", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert "Admin login" in english.text


def test_the_language_switch_sets_a_cookie_that_later_pages_follow(client):
    switched = client.get("/admin/login?lang=zh", headers={"Accept-Language": "en"})
    assert "管理员登录" in switched.text
    assert "kb_lang=zh" in switched.headers["set-cookie"]
    later = client.get("/admin/login", headers={"Accept-Language": "en"})
    assert "管理员登录" in later.text
    assert "kb_lang" not in later.headers.get("set-cookie", "")


def test_login_errors_are_shown_in_the_chosen_language(client):
    page = client.get("/admin/login?lang=zh")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = client.post("/admin/login", data={"password": "wrong", "csrf_token": token})
    assert "密码错误。" in response.text
    refused = client.post("/admin/login", data={"password": "wrong"})
    assert "安全令牌" in refused.text


def template_strings() -> set[str]:
    """Every literal passed to `_()` in the templates."""
    pattern = re.compile(r"""\b_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")
    found: set[str] = set()
    for template in (WEB_DIR / "templates").rglob("*.html"):
        found |= {double or single for double, single in pattern.findall(template.read_text(encoding="utf-8"))}
    return found


def test_every_string_has_a_chinese_translation_with_the_same_placeholders():
    messages = {
        CSRF_MESSAGE,
        admin_service.LoginFailed.template,
        admin_service.LockedOut.template,
        "The password needs at least {count} characters.",
        "The two passwords differ.",
        "An admin password is already set. Log in instead.",
        "No admin password is set yet. Set one on the first-run page.",
    }
    zh = catalogue("zh")
    wanted = template_strings() | messages
    assert {"Log out", "Overview"} <= wanted, "the template scan found nothing"
    assert sorted(wanted - zh.keys()) == []
    for english in wanted:
        assert re.findall(r"{\w+}", english) == re.findall(r"{\w+}", zh[english]), english


def test_locale_files_are_valid_json_objects_of_strings():
    for path in LOCALES_DIR.rglob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()), path.name
