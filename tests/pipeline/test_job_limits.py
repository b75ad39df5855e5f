"""Finding 5 of the hardening review: one source could hold a worker slot forever.

A link fetch had a per-read timeout but no overall deadline, so a server that trickles one byte per
second kept its job running; the heartbeat kept the hung job looking alive. Now a fetch has a total
deadline (KB_LINK_TIMEOUT_SECONDS) and every job a wall-clock limit (KB_JOB_TIMEOUT_SECONDS).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from kb.db import queue
from kb.errors import Unprocessable
from kb.ingest.fetch import fetch_link
from kb.worker.loop import Worker
from tests.helpers import ROOT
from tests.pipeline.support import create_dataset, make_settings

TRICKLE_SECONDS = 60  # then the server gives up, so that an unbounded fetch still ends the test


@pytest.fixture
def trickle_url() -> Iterator[str]:
    """An HTTP server on loopback that answers 200 and then sends its body one byte per second."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(TRICKLE_SECONDS):
                if stop.wait(1.0):
                    return
                conn.sendall(b"a")

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/slow.txt"
    stop.set()
    thread.join()
    listener.close()


@pytest.fixture
def pipeline_settings(tmp_path, database_url):
    return make_settings(
        tmp_path,
        database_url,
        link_allow_private=True,
        link_timeout_seconds=600,  # the job's own limit must stop it, not the fetch's
        job_timeout_seconds=2,
        job_max_attempts=2,
        job_backoff_seconds=600,
    )


def test_a_job_past_its_time_limit_frees_its_slot_and_fails_with_the_reason_keeping_the_retry_back_off(
    api, rt, trickle_url
):
    dataset = create_dataset(api)
    added = api.post(
        f"/api/datasets/{dataset['id']}/collections", json={"type": "link", "url": trickle_url}, headers=ROOT
    )
    assert added.status_code == 202, added.text
    assert Worker(rt).run_until_idle() == 1
    with rt.db.session() as session:
        job = queue.latest_job(session, added.json()["id"])
    assert job.status == "queued" and job.attempts == 1, "retried later, after the back-off"
    assert "KB_JOB_TIMEOUT_SECONDS" in job.last_error
    collection = api.get(f"/api/collections/{added.json()['id']}", headers=ROOT).json()
    assert collection["status"] == "queued"


def test_a_link_that_trickles_one_byte_per_second_meets_the_total_deadline(trickle_url):
    with pytest.raises(Unprocessable) as refused:
        fetch_link(trickle_url, max_bytes=1 << 20, allow_private=True, deadline_seconds=2)
    assert refused.value.code == "link_timeout" and "KB_LINK_TIMEOUT_SECONDS" in refused.value.message
