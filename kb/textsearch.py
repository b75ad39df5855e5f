"""Text prepared for PostgreSQL full-text search: Chinese segmented with jieba, English stemmed by Postgres.

Postgres' parser splits on spaces and punctuation only, so a run of Chinese characters would be one
token. We segment CJK runs with jieba in search mode (which also emits the sub-words of long words,
e.g. 上海交通大学 → 上海 / 交通 / 大学 / 上海交通大学) and hand the space-joined result to
`to_tsvector('english', ...)`, which stems English words and leaves Chinese words as they are.
"""

from __future__ import annotations

import logging
import re
import threading

TS_CONFIG = "english"
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_lock = threading.Lock()
_tokenizer = None


def _jieba():
    global _tokenizer
    with _lock:
        if _tokenizer is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            _tokenizer = jieba.Tokenizer()
            _tokenizer.initialize()
        return _tokenizer


def has_cjk(text: str) -> bool:
    return _CJK_RUN.search(text) is not None


def segment(text: str) -> str:
    """The text with every CJK run replaced by its jieba search-mode words, separated by spaces."""
    if not has_cjk(text):
        return text
    tokenizer = _jieba()
    return _CJK_RUN.sub(lambda m: " " + " ".join(tokenizer.cut_for_search(m.group(0))) + " ", text)
