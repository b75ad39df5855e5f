"""Link sources: fetched by the worker from a real HTTP server, and kept off the server's own network by default."""

from __future__ import annotations

import functools
import http.server
import socket
import threading

import pytest

from kb.errors import BadRequest, Unprocessable
from kb.ingest.fetch import check_link, fetch_link
from kb.worker.loop import Worker
from tests.helpers import ROOT
from tests.pipeline.support import create_dataset, make_settings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PAGE = (
    "<html><head><title>Opening hours</title></head><body><main><h1>Opening hours</h1>"
    "<p>The library opens at nine every weekday and closes at six in the evening.</p></main></body></html>"
)


@pytest.fixture
def web_folder(tmp_path):
    """A real HTTP server on loopback serving a folder, for link sources."""
    root = tmp_path / "site"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def pipeline_settings(tmp_path, database_url):
    """The loopback test server is a private address: these tests allow private links, as an intranet install would."""
    return make_settings(tmp_path, database_url, link_allow_private=True)


def test_a_link_is_fetched_by_the_worker_and_a_failing_one_ends_in_error_with_the_reason(api, rt, web_folder):
    root, base = web_folder
    (root / "page.html").write_text(PAGE)
    (root / "logo.png").write_bytes(PNG)
    dataset = create_dataset(api)
    ids = {}
    for name in ("page.html", "missing.html", "logo.png"):
        response = api.post(
            f"/api/datasets/{dataset['id']}/collections", json={"type": "link", "url": f"{base}/{name}"}, headers=ROOT
        )
        assert response.status_code == 202
        ids[name] = response.json()["id"]
    Worker(rt).run_until_idle()
    page, missing, logo = (api.get(f"/api/collections/{ids[n]}", headers=ROOT).json() for n in ids)
    assert (page["status"], page["source_type"], page["content_type"]) == ("ready", "link", "text/html")
    assert page["chunk_count"] >= 1 and page["size_bytes"] > 0
    assert missing["status"] == "error" and "HTTP 404" in missing["error"]
    assert logo["status"] == "error" and "image/png" in logo["error"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/admin",
        "http://localhost/",
        "http://10.1.2.3/wiki",
        "http://169.254.169.254/latest/meta-data/",  # a cloud machine's metadata service
        "http://[::1]:5432/",
        "http://[::ffff:192.168.0.1]/",
        "http://0.0.0.0/",
    ],
)
def test_a_link_to_a_private_or_local_address_is_refused_when_added(url):
    with pytest.raises(BadRequest) as refused:
        check_link(url)
    assert refused.value.code == "private_address" and "KB_LINK_ALLOW_PRIVATE" in refused.value.message
    assert check_link(url, allow_private=True) == url


def test_the_api_refuses_a_private_link_by_default_with_a_400_naming_the_setting(tmp_path, database_url, db):
    from fastapi.testclient import TestClient

    from kb.http.app import create_app
    from tests.pipeline.support import fake_registry

    settings = make_settings(tmp_path, database_url)
    with TestClient(create_app(settings, db=db, registry=fake_registry(settings))) as client:
        dataset = create_dataset(client)
        response = client.post(
            f"/api/datasets/{dataset['id']}/collections",
            json={"type": "link", "url": "http://127.0.0.1/x"},
            headers=ROOT,
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "private_address"


def test_a_host_name_whose_dns_answer_is_private_is_not_fetched(web_folder, monkeypatch):
    """The name looks public; the resolver says loopback (DNS rebinding): the connection is never made."""
    root, base = web_folder
    (root / "page.html").write_text(PAGE)
    port = int(base.rsplit(":", 1)[1])
    real = socket.getaddrinfo

    def resolver(host, *args, **kwargs):
        return real("127.0.0.1", *args, **kwargs) if host == "docs.example.com" else real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with pytest.raises(Unprocessable) as refused:
        fetch_link(f"http://docs.example.com:{port}/page.html", max_bytes=1 << 20)
    assert refused.value.code == "private_address" and "127.0.0.1" in refused.value.message
    fetched = fetch_link(f"http://docs.example.com:{port}/page.html", max_bytes=1 << 20, allow_private=True)
    assert b"Opening hours" in fetched.data


def test_every_public_address_of_a_host_is_tried_in_turn(monkeypatch):
    """A name whose first address has no route (IPv6 on an IPv4-only machine) is reached at the next one."""
    import httpcore

    from kb.ingest import fetch

    tried = []

    def connect(self, host, port, timeout=None, local_address=None, socket_options=None):
        tried.append(host)
        raise httpcore.ConnectError("no route to host")

    infos = [
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", 80, 0, 0)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 80)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: infos)
    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect)
    with pytest.raises(Unprocessable) as failed:
        fetch_link("http://docs.example.com/page.html", max_bytes=1 << 20)
    assert tried == ["2606:2800:21f:cb07:6820:80da:af6b:8b2c", "93.184.215.14"] and failed.value.code == "link_failed"
    assert fetch.PRIVATE_HINT not in failed.value.message
