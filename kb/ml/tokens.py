"""Embedders' tokenizers without transformers, where transformers would only call the Rust `tokenizers` library.

A fast transformers tokenizer whose class adds nothing to the Rust tokenizer under it encodes exactly
as `tokenizers.Tokenizer` does with the same truncation. For those, kb writes the few settings the
wrapper holds (padding and truncation side, pad and unknown ids, the model's input names) beside the saved
`tokenizer.json`, and later loads run the Rust tokenizer alone. That skips importing transformers and
converting the tokenizer, which took 2.4 s of e5-small's load (and its import several seconds more).
Tokenizers that do add something (boxes, rewritten text) keep loading through transformers.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SETTINGS_FILE = "kb-plain-tokenizer.json"
SETTINGS_FORMAT = 2  # 2 added unk_token_id (search weighs the vector list by the share of known tokens)
RUST_FILE = "tokenizer.json"


class RustTokenizer:
    """The part of a fast transformers tokenizer's interface that kb's embedders use, on the Rust tokenizer alone."""

    def __init__(self, folder: Path, settings: dict[str, Any]):
        from tokenizers import Tokenizer

        self.backend_tokenizer = Tokenizer.from_file(str(folder / RUST_FILE))
        self.pad_token_id: int = settings["pad_token_id"]
        self.unk_token_id: int | None = settings["unk_token_id"]
        self.pad_token_type_id: int = settings["pad_token_type_id"]
        self.padding_side: str = settings["padding_side"]
        self.truncation_side: str = settings["truncation_side"]
        self.split_special_tokens: bool = settings["split_special_tokens"]
        self.model_input_names: list[str] = settings["model_input_names"]

    def __call__(
        self,
        texts: str | Sequence[str],
        *,
        truncation: bool = False,
        max_length: int | None = None,
        add_special_tokens: bool = True,
    ) -> dict[str, list]:
        """Unpadded ids and masks, as `tokenizer(texts, truncation=..., max_length=...)` returns them."""
        backend = self.backend_tokenizer
        unpadded(
            backend,
            self.split_special_tokens,
            max_length=max_length if truncation else None,
            side=self.truncation_side,
        )
        single = isinstance(texts, str)
        encodings = backend.encode_batch([texts] if single else list(texts), add_special_tokens=add_special_tokens)
        fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
        result = {name: [getattr(encoding, fields[name]) for encoding in encodings] for name in self.model_input_names}
        return {name: rows[0] for name, rows in result.items()} if single else result


def unpadded(backend: Any, split_special_tokens: bool, *, max_length: int | None = None, side: str = "right") -> None:
    """Set a Rust tokenizer as transformers' wrapper would for unpadded encoding, cut at `max_length` if given.

    Its truncation and padding are state shared by every caller, so each encoding sets them first.
    """
    if backend.padding is not None:
        backend.no_padding()
    if max_length is not None:
        backend.enable_truncation(max_length, stride=0, strategy="longest_first", direction=side)
    elif backend.truncation is not None:
        backend.no_truncation()
    backend.encode_special_tokens = split_special_tokens


def plain_backend(tokenizer: Any) -> Any | None:
    """The Rust tokenizer under `tokenizer` if encoding with it alone gives the same ids, else None."""
    if isinstance(tokenizer, RustTokenizer):
        return tokenizer.backend_tokenizer
    from transformers import PreTrainedTokenizerFast

    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        return None
    if type(tokenizer)._encode_plus is not PreTrainedTokenizerFast._encode_plus:
        return None  # e.g. tokenizers that add boxes or rewrite the text before the Rust part sees it
    return tokenizer.backend_tokenizer


def write_plain_tokenizer(tokenizer: Any, folder: Path) -> bool:
    """Record beside a saved tokenizer that it can load without transformers; False if it cannot (or on a read-only cache)."""
    if plain_backend(tokenizer) is None or not (folder / RUST_FILE).is_file():
        return False
    names = [n for n in tokenizer.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")]
    settings = {
        "format": SETTINGS_FORMAT,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        "pad_token_type_id": tokenizer.pad_token_type_id,
        "unk_token_id": tokenizer.unk_token_id,
        "padding_side": tokenizer.padding_side,
        "truncation_side": tokenizer.truncation_side,
        "split_special_tokens": bool(tokenizer.split_special_tokens),
        "model_input_names": names,
    }
    staging = None
    try:
        handle, staging = tempfile.mkstemp(prefix=".kb-tokenizer-", dir=folder)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(settings, out, indent=1)
        os.replace(staging, folder / SETTINGS_FILE)  # atomic: a reader sees no file or the whole file
    except OSError as exc:
        if staging is not None:
            Path(staging).unlink(missing_ok=True)  # e.g. a full disk: no half-written file stays in the cache
        log.info("could not record %s's tokenizer settings (%s); it keeps loading through transformers", folder, exc)
        return False
    return True


def load_tokenizer(folder: Path) -> Any:
    """The tokenizer saved in `folder`: the Rust one alone when its settings were recorded, else through transformers.

    The first transformers load of a plain tokenizer records its settings, so the next load is fast.
    """
    settings_file = folder / SETTINGS_FILE
    if settings_file.is_file() and (folder / RUST_FILE).is_file():
        settings = json.loads(settings_file.read_text(encoding="utf-8"))
        if settings.get("format") == SETTINGS_FORMAT:
            return RustTokenizer(folder, settings)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    write_plain_tokenizer(tokenizer, folder)
    return tokenizer
