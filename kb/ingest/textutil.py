"""Text helpers shared by readers: decoding bytes of unknown encoding and tidying extracted text."""

from __future__ import annotations

import codecs
import re
import unicodedata

from charset_normalizer import from_bytes

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: its BOM starts with the UTF-16 LE one
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CHINESE_CODECS = {"gb2312", "gbk", "gb18030", "hz", "big5", "big5hkscs", "cp950", "cp936", "euc_kr", "cp949"}
# Short Chinese samples are ambiguous between GBK and Big5; most uploads here are Simplified Chinese.
_SHORT_SAMPLE_BYTES = 200
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_SPACES = re.compile(r"[ \t\u00a0\u3000\u2000-\u200a\u202f\u205f]+")
_CJK = r"\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
# Letters and punctuation of the scripts people upload; a wrong byte order lands mostly outside these.
_COMMON_CHAR = re.compile(
    r"[\t\n\r\x20-\x7e\u00a0-\u052f\u2000-\u206f\u3000-\u30ff\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]"
)
_CJK_LINE_BREAK = re.compile(rf"(?<=[{_CJK}])[ \t]*\n[ \t]*(?=[{_CJK}])")


def detect_encoding(data: bytes) -> str | None:
    """Name the codec that decodes `data` as text, or None when it does not look like text."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return codec
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    if b"\x00" in data:
        return _bomless_utf16(data)
    matches = from_bytes(data[: 256 * 1024])
    best = matches.best()
    if best is None:
        return None
    codec = best.encoding.lower()
    tied = {m.encoding.lower() for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)}
    if "cp1252" in tied:
        codec = "cp1252"  # short Western texts fit several code pages equally; this one is by far the most common
    if codec in _CHINESE_CODECS and _non_ascii_bytes(data) < _SHORT_SAMPLE_BYTES and _decodes(data, "gb18030"):
        return "gb18030"
    if codec in ("gb2312", "gbk"):
        return "gb18030"  # a superset: characters outside GB2312 still decode
    return codec


def decode_text(data: bytes, codec: str) -> str:
    """Decode with `codec`, replacing the rare undecodable byte rather than failing a whole file."""
    return data.decode(codec, errors="replace")


def _bomless_utf16(data: bytes) -> str | None:
    """UTF-16 without a BOM: the byte order whose decoding is (nearly) all common characters, if any."""
    best, best_share = None, 0.0
    for codec in ("utf-16-le", "utf-16-be"):
        try:
            sample = data[: len(data) // 2 * 2][:8192].decode(codec)
        except UnicodeDecodeError:
            continue
        share = sum(1 for ch in sample if _COMMON_CHAR.match(ch)) / max(len(sample), 1)
        if share > best_share:
            best, best_share = codec, share
    return best if best_share >= 0.9 else None


def _decodes(data: bytes, codec: str) -> bool:
    try:
        data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _non_ascii_bytes(data: bytes) -> int:
    return sum(1 for b in data if b > 0x7F)


def looks_binary(text: str) -> bool:
    """True when decoded text is mostly control characters, i.e. the bytes were not text after all."""
    sample = text[:8192]
    if not sample:
        return False
    controls = sum(1 for ch in sample if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t\f\v")
    return controls / len(sample) > 0.02 or sample.count("\ufffd") / len(sample) > 0.1


def tidy(text: str, *, preformatted: bool = False) -> str:
    """Normalise newlines, odd spaces and invisible characters; keep paragraph breaks (and indentation if preformatted)."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = text.translate(_INVISIBLE).replace("\x00", "")
    if preformatted:
        return "\n".join(line.rstrip() for line in text.expandtabs(4).split("\n")).strip("\n")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def join_cjk_lines(text: str) -> str:
    """Remove line breaks between two CJK characters: PDF layout breaks them mid-sentence."""
    return _CJK_LINE_BREAK.sub("", text)


def paragraphs(text: str) -> list[str]:
    """Split tidied text on blank lines."""
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


_LINE_END = tuple(".!?:;。！？；：…\"'”’)）]")
_LIST_ITEM = re.compile(r"^(?:[-•*·▪●◦‣–]|\d{1,3}[.)]|[A-Za-z][.)]|\(\w{1,3}\))\s")
_CJK_CHAR = re.compile(f"[{_CJK}]")


def reflow(text: str) -> str:
    """Join lines that a PDF wrapped in mid-sentence; keep blank-line paragraph breaks and list items."""
    out = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        typical = sorted(len(line) for line in lines)[len(lines) // 2]
        merged = [lines[0]]
        for previous, line in zip(lines, lines[1:], strict=False):
            wrapped = len(previous) >= 0.7 * typical and not previous.endswith(_LINE_END) and not _LIST_ITEM.match(line)
            merged[-1:] = [_join_wrapped(merged[-1], line)] if wrapped else [merged[-1], line]
        out.append("\n".join(merged))
    return "\n\n".join(out)


def _join_wrapped(left: str, right: str) -> str:
    if left.endswith("-") and left[-2:-1].isalpha() and right[:1].islower():
        return left[:-1] + right  # a word hyphenated at the line end
    if _CJK_CHAR.match(left[-1]) or _CJK_CHAR.match(right[0]):
        return left + right
    return f"{left} {right}"
