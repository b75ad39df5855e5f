"""Text prepared for PostgreSQL full-text search: Chinese segmented with jieba, English stemmed by Postgres.

Postgres' parser splits on spaces and punctuation only, so a run of Chinese characters would be one
token. We segment CJK runs with jieba and hand the space-joined words to `to_tsvector('english', ...)`,
which stems English words, drops English stop words and leaves Chinese words as they are.

- Index time (`segment`): jieba's search mode, which also emits the dictionary sub-words of long
  words (上海交通大学 → 上海 / 交通 / 大学 / 上海交通大学), so a query for a part still finds the whole.
- Query time (`segment_query`): the same words, except that words of the dataset's user dictionary
  stay whole (a query for 上海交通大学 should not match every text about 上海 or 大学) and Chinese
  question words and particles (什么, 哪里, 吗 ...) are dropped: they say what is asked, not what to find.

A dataset's user dictionary (`dataset.user_dictionary`, a list of words) is added to a jieba
tokenizer of its own, cached per dictionary, so domain terms are segmented as one word at index and
query time. Text is NFKC-normalised first, so full-width letters and digits match their ASCII forms.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections import ChainMap, OrderedDict
from collections.abc import Iterable, Iterator

TS_CONFIG = "english"
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RUN = re.compile(f"[{_CJK}]+")
_HAS_CJK = re.compile(f"[{_CJK}]")
# Question words and particles of Chinese questions; English ones are Postgres' stop words already.
QUERY_STOP_WORDS = frozenset(
    [
        "什么",
        "什么样",
        "哪",
        "哪里",
        "哪儿",
        "哪个",
        "哪些",
        "哪一个",
        "哪年",
        "哪一年",
        "谁",
        "多少",
        "几",
        "几个",
        "怎么",
        "怎样",
        "怎么样",
        "如何",
        "为什么",
        "为何",
        "是否",
        "是不是",
        "有没有",
        "吗",
        "呢",
        "吧",
        "啊",
        "呀",
        "的",
        "了",
        "是",
        "请问",
        "请",
        "一下",
    ]
)
_CACHED_DICTIONARIES = 8

_lock = threading.Lock()
_base = None
_with_dictionary: OrderedDict[tuple[str, ...], object] = OrderedDict()


def _base_tokenizer():
    global _base
    if _base is None:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        _base = jieba.Tokenizer()
        _base.initialize()
    return _base


def normalise_dictionary(words: Iterable[str]) -> tuple[str, ...]:
    """The dictionary words that matter to segmentation: stripped, containing Chinese, sorted, unique."""
    return tuple(sorted({w.strip() for w in words if isinstance(w, str) and _HAS_CJK.search(w) and w.strip()}))


def tokenizer_for(dictionary: Iterable[str] = ()):
    """A jieba tokenizer knowing the dictionary's words (the shared default one when there are none)."""
    words = normalise_dictionary(dictionary)
    with _lock:
        base = _base_tokenizer()
        if not words:
            return base
        if words in _with_dictionary:
            _with_dictionary.move_to_end(words)
            return _with_dictionary[words]
        import jieba

        tokenizer = jieba.Tokenizer()
        # Layer the user words over the default dictionary instead of loading a private copy of it
        # (0.5 s and ~60 MB each); jieba only reads FREQ with `in`, `[]` and `get`, which ChainMap serves.
        tokenizer.FREQ = ChainMap({}, base.FREQ)
        tokenizer.total = base.total
        tokenizer.initialized = True
        for word in words:
            tokenizer.add_word(word)
        _with_dictionary[words] = tokenizer
        if len(_with_dictionary) > _CACHED_DICTIONARIES:
            _with_dictionary.popitem(last=False)
        return tokenizer


def has_cjk(text: str) -> bool:
    return _HAS_CJK.search(text) is not None


def _replace_cjk_runs(text: str, words_of_run) -> str:
    text = unicodedata.normalize("NFKC", text)
    if not has_cjk(text):
        return text
    return _CJK_RUN.sub(lambda m: " " + " ".join(words_of_run(m.group(0))) + " ", text)


def segment(text: str, dictionary: Iterable[str] = ()) -> str:
    """Index form: every CJK run replaced by its jieba search-mode words, separated by spaces."""
    tokenizer = tokenizer_for(dictionary)
    return _replace_cjk_runs(text, tokenizer.cut_for_search)


def query_words(run: str, dictionary: Iterable[str] = ()) -> Iterator[str]:
    """Query form of one CJK run: dictionary words whole, stop words dropped, other words with their sub-words."""
    tokenizer = tokenizer_for(dictionary)
    keep_whole = set(normalise_dictionary(dictionary))
    for word in tokenizer.cut(run):
        if word in keep_whole:
            yield word
        elif word not in QUERY_STOP_WORDS:
            yield from tokenizer.cut_for_search(word)


def segment_query(text: str, dictionary: Iterable[str] = ()) -> str:
    """Query form of a text: CJK runs as `query_words`, the rest left to Postgres' parser."""
    words = normalise_dictionary(dictionary)
    return _replace_cjk_runs(text, lambda run: query_words(run, words))
