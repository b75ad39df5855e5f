"""Hostile uploads through the API and the worker: each is refused or ends with a reason, never a 500,
and the data stored before them is untouched."""

from __future__ import annotations

import io
import random
import zipfile

from kb.worker.loop import Worker
from tests.helpers import ROOT
from tests.pipeline.support import MARKDOWN, create_dataset, upload
from tests.unit.test_readers import make_pdf


def docx_zip_bomb() -> bytes:
    """A DOCX whose document.xml is 200 MB of spaces, squeezed into a few hundred KB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
        )
        with archive.open("word/document.xml", "w") as member:
            block = b" " * (1 << 20)
            for _ in range(200):
                member.write(block)
    return buffer.getvalue()


def pdf_with_object_loops() -> bytes:
    """A PDF whose page tree lists itself as its own kid and whose page's contents point back to the page."""
    looped = make_pdf(["Loop"]).replace(b"/Kids [5 0 R]", b"/Kids [2 0 R 5 0 R]").replace(b"/Count 1", b"/Count 2")
    return looped.replace(b"/Contents 4 0 R", b"/Contents 5 0 R")


HOSTILE = {
    "bomb.docx": docx_zip_bomb(),
    "loop.pdf": pdf_with_object_loops(),
    "empty.txt": b"",
    "../../etc/passwd": b"root:x:0:0:root:/root:/bin/bash\n",
    "../../etc/passwd.txt": b"root:x:0:0:root:/root:/bin/bash\n",
    "noise.txt": random.Random(8).randbytes(64 * 1024),
}


def test_hostile_uploads_are_refused_or_fail_with_a_reason_and_leave_stored_data_intact(api, rt):
    dataset = create_dataset(api)
    good = upload(api, dataset["id"], ("lakes.md", MARKDOWN)).json()["items"][0]
    Worker(rt).run_until_idle()
    before = api.get(f"/api/collections/{good['id']}", headers=ROOT).json()
    assert before["status"] == "ready"

    outcomes = {}
    for name, content in HOSTILE.items():
        response = upload(api, dataset["id"], (name, content))
        assert response.status_code < 500, (name, response.text)
        item = response.json()["items"][0] if "items" in response.json() else None
        if response.status_code >= 400:
            assert response.json()["error"]["message"], name
            outcomes[name] = ("refused", response.status_code)
        else:
            outcomes[name] = ("accepted", item["id"])
    Worker(rt).run_until_idle()

    for name, (kind, value) in outcomes.items():
        if kind == "accepted":
            collection = api.get(f"/api/collections/{value}", headers=ROOT).json()
            assert collection["status"] in ("ready", "error"), (name, collection)
            if collection["status"] == "error":
                assert collection["error"], f"{name} failed without a reason"
            assert "/" not in collection["name"] and ".." not in collection["name"], collection["name"]
            outcomes[name] = (collection["status"], collection["error"])
    assert outcomes["empty.txt"][0] == "refused"
    assert outcomes["bomb.docx"][0] in ("refused", "error")
    assert "etc" not in str(rt.settings.files_dir) and not (rt.settings.files_dir.parent / "etc").exists()

    after = api.get(f"/api/collections/{good['id']}", headers=ROOT).json()
    assert (after["status"], after["chunk_count"]) == ("ready", before["chunk_count"])
    found = api.post(f"/api/datasets/{dataset['id']}/search", json={"query": "whitefish perch"}, headers=ROOT).json()
    assert any("Perch" in hit["q"] for hit in found["results"]), found
