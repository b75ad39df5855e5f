"""Simplified Chinese and English. Strings are written in English in templates and code as
`_("...")`; translations live in `web/locales/<lang>/*.json` (one file per area), merged here."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from fastapi import Request

LOCALES_DIR = Path(__file__).resolve().parents[2] / "web" / "locales"
LANGUAGES = ("en", "zh")
LANG_COOKIE = "kb_lang"


@cache
def catalogue(lang: str) -> dict[str, str]:
    """All translations for `lang`, merged from every JSON file of its folder."""
    merged: dict[str, str] = {}
    folder = LOCALES_DIR / lang
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            merged.update(json.loads(path.read_text(encoding="utf-8")))
    return merged


@cache
def _message_patterns(lang: str) -> list[tuple[re.Pattern[str], str]]:
    """The `failures.json` templates as patterns: a stored English message with its names filled in."""
    path = LOCALES_DIR / lang / "failures.json"
    if not path.is_file():
        return []
    templates = json.loads(path.read_text(encoding="utf-8"))
    patterns = []
    for english, translated in templates.items():
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>.+?)", re.escape(english))
        patterns.append((re.compile(regex, re.S), translated))
    return patterns


def translate_message(lang: str, text: str) -> str:
    """A message stored in English (a failure reason with a file name in it) in the reader's language."""
    if lang == "en" or not text:
        return text
    exact = catalogue(lang).get(text)
    if exact is not None:
        return exact
    for pattern, translated in _message_patterns(lang):
        match = pattern.fullmatch(text)
        if match:
            return translated.format(**match.groupdict())
    return text


def translate(lang: str, text: str, **values: object) -> str:
    translated = catalogue(lang).get(text, text) if lang != "en" else text
    return translated.format(**values) if values else translated


def parse_accept_language(header: str) -> str:
    """The first supported language in an Accept-Language header, by quality."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES:
            ranked.append((-quality, index, primary))
    return min(ranked)[2] if ranked else "en"


def request_language(request: Request) -> str:
    """The language chosen by cookie (the switcher), else by Accept-Language."""
    chosen = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return parse_accept_language(request.headers.get("accept-language", ""))
