"""The skeleton: health, auth on /v1, error shapes, migrations both ways, embedded server sharing."""

from __future__ import annotations

import subprocess
import sys

import psycopg
from sqlalchemy import inspect, text

from kb.db.engine import Database, libpq_url
from kb.db.migrate import downgrade, upgrade
from kb.db.store import keys as key_store
from kb.security import display_prefix, generate_api_key, hash_api_key
from tests.helpers import ROOT


def test_healthz_answers_ok_when_the_database_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["chat_model"]["state"] in ("ready", "not loaded")


def test_healthz_says_503_in_json_when_the_database_is_gone(settings):
    from fastapi.testclient import TestClient

    from kb.http.app import create_app

    dead = Database("postgresql://postgres@127.0.0.1:1/none")
    with TestClient(create_app(settings, db=dead)) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"


def test_v1_models_refuses_a_missing_key_in_openai_error_shape(client):
    response = client.get("/v1/models")
    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"}
    assert error["type"] == "authentication_error"


def test_v1_models_refuses_a_wrong_key(client):
    response = client.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_root_key_lists_the_configured_models(client, settings):
    response = client.get("/v1/models", headers=ROOT)
    assert response.status_code == 200
    ids = [m["id"] for m in response.json()["data"]]
    assert settings.chat_model in ids and settings.embed_model in ids


def test_stored_keys_are_hashed_and_revocation_and_expiry_refuse_them(client, db):
    live, revoked, expired = generate_api_key(), generate_api_key(), generate_api_key()
    with db.session() as session:
        key_store.add_key(session, name="live", prefix=display_prefix(live), key_hash=hash_api_key(live))
        gone = key_store.add_key(
            session, name="revoked", prefix=display_prefix(revoked), key_hash=hash_api_key(revoked)
        )
        key_store.revoke_key(session, gone.id)
        session.execute(
            text(
                "INSERT INTO api_key (name, prefix, key_hash, expires_at) VALUES ('old', 'x', :h, now() - interval '1 day')"
            ),
            {"h": hash_api_key(expired)},
        )
        session.commit()
        stored = session.execute(text("SELECT key_hash FROM api_key")).scalars().all()
    assert live not in stored and hash_api_key(live) in stored
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {live}"}).status_code == 200
    assert (
        client.get("/v1/models", headers={"Authorization": f"Bearer {revoked}"}).json()["error"]["code"]
        == "key_revoked"
    )
    assert (
        client.get("/v1/models", headers={"Authorization": f"Bearer {expired}"}).json()["error"]["code"]
        == "key_expired"
    )


def test_unknown_api_route_is_a_json_404(client):
    response = client.get("/api/nothing-here", headers=ROOT)
    assert response.status_code == 404
    assert "error" in response.json()


def test_unknown_page_is_an_html_404_with_the_message_escaped(client):
    response = client.get("/<script>x</script>", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert "<script>x</script>" not in response.text
    assert "&lt;script&gt;" in response.text


def test_migrations_downgrade_to_nothing_and_upgrade_again(database_url):
    db = Database(database_url)
    try:
        downgrade(database_url, "base")
        with db.engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        upgrade(database_url)
        with db.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            storage = conn.execute(
                text("SELECT attstorage FROM pg_attribute WHERE attrelid = 'chunk'::regclass AND attname = 'embedding'")
            ).scalar()
        assert {"dataset", "collection", "chunk", "app", "chat", "message", "api_key", "job"} <= tables
        assert storage == "p", "vectors must stay in the row so the planner uses the HNSW index"
    finally:
        db.dispose()


def test_migrating_a_named_database_starts_no_embedded_server(database_url, tmp_path, monkeypatch):
    """upgrade(url) also resolved the configured database, starting an unrelated embedded PostgreSQL under
    ./data when KB_DATABASE_URL was unset (bench/load.py's process found one left running)."""
    monkeypatch.delenv("KB_DATABASE_URL", raising=False)
    monkeypatch.setenv("KB_DATA_DIR", str(tmp_path / "configured"))
    upgrade(database_url)
    assert not (tmp_path / "configured").exists()


def test_a_second_process_joins_the_embedded_server_and_sees_the_same_data(tmp_path):
    data_dir = tmp_path / "kbdata"
    script = (
        "import sys; from kb.config import Settings; from kb.db.engine import resolve_database_url; import psycopg;"
        "from kb.db.engine import libpq_url;"
        "s = Settings(_env_file=None, data_dir=sys.argv[1]); url = libpq_url(resolve_database_url(s));"
        "c = psycopg.connect(url, autocommit=True);"
        "c.execute('CREATE TABLE IF NOT EXISTS t (v int)');"
        "c.execute('INSERT INTO t VALUES (1)');"
        "print(c.execute('SELECT count(*) FROM t').fetchone()[0])"
    )

    def run() -> int:
        out = subprocess.run([sys.executable, "-c", script, str(data_dir)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return int(out.stdout.strip().splitlines()[-1])

    assert run() == 1
    # The first process stopped the server on exit; the data survives a restart.
    assert run() == 2
    assert (data_dir / "pg" / "PG_VERSION").exists()


def test_a_process_killed_while_using_the_embedded_server_does_not_keep_it_running_forever(tmp_path):
    data_dir = tmp_path / "kbdata"
    join = (
        "import sys, time; from kb.config import Settings; from kb.db.engine import resolve_database_url;"
        "resolve_database_url(Settings(_env_file=None, data_dir=sys.argv[1])); print('up', flush=True); time.sleep(600)"
    )
    killed = subprocess.Popen([sys.executable, "-c", join, str(data_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert killed.stdout.readline().strip() == "up"
    finally:
        killed.kill()
        killed.wait(30)
        killed.stdout.close()
    postmaster = data_dir / "pg" / "postmaster.pid"
    assert postmaster.exists(), "the server outlives the process that was killed"
    # The next process to use the server forgets the dead one, so the server stops when it exits.
    subprocess.run(
        [sys.executable, "-c", join.replace("time.sleep(600)", "pass"), str(data_dir)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    assert not postmaster.exists(), "the last live user stopped the server"


def test_the_vector_extension_is_installed(database_url):
    with psycopg.connect(libpq_url(database_url)) as conn:
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    assert version is not None
