"""Finding 15 of the hardening review: a DOCX holding up to 256 MB of XML was parsed inside the worker.

The XML a DOCX reader parses is now held to 32 MB (images count only against the unzipped total);
40 MB of barely compressible XML, which passes the zip-bomb ratio check, is refused before parsing.
"""

from __future__ import annotations

import io
import os
import zipfile

import docx
import pytest

from kb.errors import Unprocessable
from kb.ingest import read_document


def _docx_with_xml_padding(megabytes: int) -> bytes:
    document = docx.Document()
    document.add_paragraph("A short paragraph of real text.")
    plain = io.BytesIO()
    document.save(plain)
    padding = f"<!-- {os.urandom(megabytes * 2**19).hex()} -->".encode()  # random hex: compresses about 2x
    out = io.BytesIO()
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "word/document.xml":
                head, _, body = data.partition(b"?>")
                data = head + b"?>" + padding + body
            target.writestr(item, data)
    return out.getvalue()


def test_a_docx_with_more_xml_than_the_limit_is_refused_before_parsing():
    with pytest.raises(Unprocessable) as refused:
        read_document(_docx_with_xml_padding(40), "huge.docx")
    assert refused.value.code == "document_too_large" and "limit 32 MB" in refused.value.message


def test_a_docx_under_the_limit_is_read():
    assert "real text" in read_document(_docx_with_xml_padding(1), "fine.docx").blocks[0].text
