"""Real `kb worker` and `kb serve --no-worker` processes on one database: killed, stopped, and run side by side.

The workers embed through a remote embedder served by this test (`tests.remote_support.FakeProvider`),
so the test decides when an embedding request answers: holding it keeps a worker inside a job for as
long as the test needs, which is how a kill or a stop is made to land in the middle of a job.
Every run is checked against an undisturbed run of the same files: same chunks, each stored once,
every job done, none left running.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from kb.config import Settings
from kb.db.engine import Database
from kb.ml.registry import ModelRegistry
from kb.runtime import Runtime
from kb.schemas import DatasetCreate
from kb.services import collections as collection_service
from kb.services import datasets as dataset_service
from kb.services.collections import Upload
from kb.worker.loop import CANCEL_MARGIN
from tests.helpers import REPO, ROOT, ROOT_KEY, free_port
from tests.remote_support import FakeProvider
from tests.shared_data import shared_data_dir

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)

FILES = 20
DOC_CHARS = 5000  # about ten 128-token chunks per file: one embedding request each
EMBED_MODEL = "fake-embed"
STARTUP_SECONDS = 60  # a loaded two-core machine can take a while to import torch and friends
RUN_SECONDS = 120
# Exit bound after SIGTERM: the grace period, the cancel margin, and room for the interpreter to wind down.
EXIT_SLACK_SECONDS = 20
PROCESSING = re.compile(r"Processing \w+ job (\d+) \(collection (\d+), attempt (\d+)")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Path]:
    """Twenty Markdown files of whole paragraphs from the SQuAD kit, about 5 kB each."""
    folder = tmp_path_factory.mktemp("corpus")
    sources = sorted((shared_data_dir() / "squad_dev_kit" / "docs").glob("*.md"))[:FILES]
    files = []
    for source in sources:
        kept: list[str] = []
        for block in source.read_text(encoding="utf-8").split("\n\n"):
            if kept and sum(map(len, kept)) + len(block) > DOC_CHARS:
                break
            kept.append(block)
        files.append(folder / source.name)
        files[-1].write_text("\n\n".join(kept) + "\n", encoding="utf-8")
    return files


class KbProcess:
    """One `python -m kb.cli.main ...` subprocess, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], folder: Path):
        self.name = name
        self.signalled = False  # a process the test stopped on purpose may exit non-zero
        self.log_path = folder / f"{name}.log"
        with self.log_path.open("wb") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kb.cli.main", *args],
                env=env,
                cwd=folder,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def jobs_taken(self) -> list[tuple[int, int, int]]:
        """(collection, job, attempt) of every job this worker started, from its log."""
        return [
            (int(collection), int(job), int(attempt)) for job, collection, attempt in PROCESSING.findall(self.log())
        ]

    def signal(self, signum: int) -> None:
        self.signalled = True
        self.proc.send_signal(signum)

    def crashed(self) -> bool:
        return not self.signalled and self.proc.poll() not in (None, 0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@dataclass
class Deployment:
    """The processes of one kb deployment sharing this test's database, file store and embedder."""

    settings: Settings
    env: dict[str, str]
    rt: Runtime
    embedder: FakeProvider
    folder: Path
    processes: list[KbProcess] = field(default_factory=list)

    def start(self, name: str, *args: str) -> KbProcess:
        self.processes.append(KbProcess(name, [*args], self.env, self.folder))
        return self.processes[-1]

    def start_worker(self, name: str) -> KbProcess:
        return self.start(name, "worker", "--no-migrate")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (exit {p.proc.poll()}) ---\n{p.log()[-3000:]}" for p in self.processes)

    def wait_for(self, condition, what: str, timeout: float = RUN_SECONDS) -> None:
        """Poll until `condition()` holds; fail with the processes' logs otherwise."""
        deadline = time.monotonic() + timeout
        while not condition():
            dead = [p.name for p in self.processes if p.crashed()]
            if dead or time.monotonic() > deadline:
                pytest.fail(f"waited for {what}; crashed: {dead or 'none'}\n{self.logs()}")
            time.sleep(0.1)

    def query(self, sql: str, **params) -> list:
        with self.rt.db.session() as session:
            return session.execute(text(sql), params).all()


@pytest.fixture
def deployment(tmp_path: Path, database_url: str, db) -> Iterator[Deployment]:
    yield from _deploy(tmp_path, database_url, db)


@pytest.fixture
def external_deployment(tmp_path: Path, external_database_url: str) -> Iterator[Deployment]:
    """The same deployment against a PostgreSQL server of the test's own, reached only through KB_DATABASE_URL."""
    database = Database(external_database_url, pool_size=5)
    try:
        yield from _deploy(tmp_path, external_database_url, database)
    finally:
        database.dispose()


def _deploy(tmp_path: Path, database_url: str, db) -> Iterator[Deployment]:
    embedder = FakeProvider(delay=0.1)
    models_file = tmp_path / "models.json"
    models_file.write_text(
        json.dumps(
            {
                "embedding": [
                    {
                        "name": EMBED_MODEL,
                        "backend": "remote",
                        "dim": 3,
                        "context_length": 128,
                        "timeout_seconds": 120,
                        "providers": [{"base_url": embedder.base_url}],
                    }
                ]
            }
        )
    )
    values = {
        "data_dir": str(tmp_path / "data"),
        "database_url": database_url,
        "root_key": ROOT_KEY,
        "models_file": str(models_file),
        "embed_model": EMBED_MODEL,
        "torch_threads": "1",
        "worker_poll_seconds": "0.2",
        "job_heartbeat_seconds": "0.3",
        "job_stale_seconds": "3",
        "job_backoff_seconds": "0",
        "shutdown_grace_seconds": "2",
        "log_level": "INFO",
    }
    settings = Settings(_env_file=None, **values)
    env = {key: value for key, value in os.environ.items() if not key.startswith("KB_")}
    env.update({f"KB_{key.upper()}": value for key, value in values.items()})
    env.update(PYTHONPATH=str(REPO), OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    rt = Runtime(settings, db, ModelRegistry(settings))
    deployed = Deployment(settings, env, rt, embedder, tmp_path)
    yield deployed
    for process in deployed.processes:
        process.stop()
    embedder.close()
    rt.registry.embedder(EMBED_MODEL).pool.client.close()


def add_dataset(deployed: Deployment, name: str, files: list[Path]) -> int:
    """A dataset with the files queued as collections (what an upload does), in this test's process."""
    dataset = dataset_service.create_dataset(deployed.rt, DatasetCreate(name=name, embed_model=EMBED_MODEL))
    for path in files:
        with path.open("rb") as handle:
            outcome = collection_service.add_file(deployed.rt, dataset.id, Upload(path.name, handle))
        assert outcome.collection is not None and not outcome.duplicate, outcome
    return dataset.id


def statuses(deployed: Deployment, dataset_id: int) -> Counter:
    rows = deployed.query("SELECT status, count(*) FROM collection WHERE dataset_id = :d GROUP BY status", d=dataset_id)
    return Counter(dict(rows))


def jobs_of(deployed: Deployment, dataset_id: int) -> list:
    return deployed.query(
        "SELECT j.collection_id, j.status, j.attempts, j.last_error FROM job j JOIN collection c ON c.id = j.collection_id "
        "WHERE c.dataset_id = :d ORDER BY j.collection_id",
        d=dataset_id,
    )


def chunks_by_file(deployed: Deployment, dataset_id: int) -> dict[str, list[tuple]]:
    """Each collection's chunks as (position, kind, text), by file name."""
    rows = deployed.query(
        "SELECT c.name, k.position, k.kind, k.q FROM chunk k JOIN collection c ON c.id = k.collection_id "
        "WHERE c.dataset_id = :d ORDER BY c.name, k.position",
        d=dataset_id,
    )
    found: dict[str, list[tuple]] = {}
    for name, position, kind, q in rows:
        found.setdefault(name, []).append((position, kind, q))
    return found


def wait_until_all_ready(deployed: Deployment, dataset_id: int) -> None:
    deployed.wait_for(
        lambda: statuses(deployed, dataset_id)["ready"] == FILES, f"all {FILES} files of dataset {dataset_id} ready"
    )


def hold_a_worker_inside_its_jobs(deployed: Deployment, dataset_id: int) -> list[int]:
    """Once some files are ready, hold the embedder until each of a worker's job slots waits on it; their collection ids."""
    deployed.wait_for(lambda: statuses(deployed, dataset_id)["ready"] >= 3, "three files ready")
    deployed.embedder.hold()
    slots = deployed.settings.worker_jobs
    deployed.wait_for(
        lambda: deployed.embedder.waiting == slots, f"the worker's {slots} jobs waiting for their embeddings"
    )
    running = deployed.query(
        "SELECT collection_id FROM job WHERE status = 'running' AND collection_id IN "
        "(SELECT id FROM collection WHERE dataset_id = :d)",
        d=dataset_id,
    )
    assert len(running) == slots, running
    assert statuses(deployed, dataset_id)["ready"] < FILES, "the run must still be going when the worker is stopped"
    return [collection_id for (collection_id,) in running]


def assert_same_as_an_undisturbed_run(deployed: Deployment, dataset_id: int, files: list[Path]) -> None:
    """Every file ready with exactly the chunks an undisturbed worker makes of it, each chunk stored once."""
    counts = dict(deployed.query("SELECT name, chunk_count FROM collection WHERE dataset_id = :d", d=dataset_id))
    calm_id = add_dataset(deployed, "undisturbed", files)
    wait_until_all_ready(deployed, calm_id)
    disturbed, calm = chunks_by_file(deployed, dataset_id), chunks_by_file(deployed, calm_id)
    assert sorted(disturbed) == sorted(path.name for path in files)
    for name, chunks in calm.items():
        assert disturbed[name] == chunks, f"{name}: the chunks differ from an undisturbed run"
        assert counts[name] == len(chunks), f"{name}: chunk_count says {counts[name]}, {len(chunks)} are stored"
    duplicates = deployed.query(
        "SELECT collection_id, q, count(*) FROM chunk WHERE dataset_id = :d GROUP BY collection_id, q HAVING count(*) > 1",
        d=dataset_id,
    )
    assert duplicates == []
    assert all(len(chunks) > 1 for chunks in calm.values()), "each file makes several chunks"


def assert_every_job_done_once(deployed: Deployment, dataset_id: int) -> list:
    jobs = jobs_of(deployed, dataset_id)
    assert len(jobs) == FILES and len({job.collection_id for job in jobs}) == FILES, "one job per file"
    assert {job.status for job in jobs} == {"done"}, [job for job in jobs if job.status != "done"]
    assert deployed.query("SELECT id, status FROM job WHERE status IN ('running', 'queued')") == []
    return jobs


def test_a_worker_killed_mid_job_leaves_nothing_half_written_and_a_new_worker_finishes_every_file(deployment, corpus):
    dataset_id = add_dataset(deployment, "disturbed", corpus)
    first = deployment.start_worker("worker-1")
    interrupted = hold_a_worker_inside_its_jobs(deployment, dataset_id)

    first.signal(signal.SIGKILL)
    first.proc.wait(30)
    deployment.embedder.let_go()
    for collection_id in interrupted:
        assert deployment.query("SELECT count(*) FROM chunk WHERE collection_id = :c", c=collection_id) == [(0,)], (
            "a killed job wrote none of its chunks"
        )

    second = deployment.start_worker("worker-2")
    wait_until_all_ready(deployment, dataset_id)
    jobs = {job.collection_id: job for job in assert_every_job_done_once(deployment, dataset_id)}
    for collection_id in interrupted:
        assert jobs[collection_id].attempts == 2 and "stopped responding" in jobs[collection_id].last_error, (
            "a killed job was found stalled and run again"
        )
    assert all(job.attempts == 1 for cid, job in jobs.items() if cid not in interrupted)
    assert set(interrupted) <= {cid for cid, _, _ in second.jobs_taken()}
    assert_same_as_an_undisturbed_run(deployment, dataset_id, corpus)


@pytest.mark.parametrize("job_ends", ["within_the_grace_period", "after_the_grace_period"])
def test_a_stopped_worker_exits_in_time_finishing_or_releasing_its_jobs_and_the_next_worker_finishes_every_file(
    deployment, corpus, job_ends
):
    dataset_id = add_dataset(deployment, "stopped", corpus)
    first = deployment.start_worker("worker-1")
    interrupted = hold_a_worker_inside_its_jobs(deployment, dataset_id)

    first.signal(signal.SIGTERM)
    if job_ends == "within_the_grace_period":
        deployment.embedder.let_go()
    bound = deployment.settings.shutdown_grace_seconds + CANCEL_MARGIN + EXIT_SLACK_SECONDS
    assert first.proc.wait(bound) == 0, first.log()
    deployment.embedder.let_go()
    states = {job.collection_id: job for job in jobs_of(deployment, dataset_id)}
    for collection_id in interrupted:
        if job_ends == "within_the_grace_period":
            assert (states[collection_id].status, states[collection_id].attempts) == ("done", 1)
        else:
            assert (states[collection_id].status, states[collection_id].attempts) == ("queued", 0), (
                "released, not counted"
            )
    assert deployment.query("SELECT id FROM job WHERE status = 'running'") == [], "the stopped worker holds no job"
    assert statuses(deployment, dataset_id)["queued"] > 0, "it took no new job after the signal"

    deployment.start_worker("worker-2")
    wait_until_all_ready(deployment, dataset_id)
    jobs = assert_every_job_done_once(deployment, dataset_id)
    assert all(job.attempts == 1 for job in jobs), "a graceful stop costs no attempt"
    assert_same_as_an_undisturbed_run(deployment, dataset_id, corpus)


@pytest.mark.parametrize("database", ["embedded", "external"])
def test_two_workers_and_two_api_processes_on_one_database_process_each_upload_exactly_once(request, database, corpus):
    deployment = request.getfixturevalue("deployment" if database == "embedded" else "external_deployment")
    ports = [free_port(), free_port()]
    apis = [
        deployment.start(f"api-{i}", "serve", "--no-worker", "--no-migrate", "--port", str(port))
        for i, port in enumerate(ports)
    ]
    workers = [deployment.start_worker(f"worker-{i}") for i in range(2)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]

    def answering(url: str) -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    deployment.wait_for(lambda: all(answering(url) for url in urls), "both API processes answering", STARTUP_SECONDS)
    with httpx.Client(headers=ROOT, timeout=30) as client:
        created = client.post(f"{urls[0]}/api/datasets", json={"name": "shared", "embed_model": EMBED_MODEL})
        assert created.status_code == 201, created.text
        dataset_id = created.json()["id"]
        for index, path in enumerate(corpus):
            response = client.post(
                f"{urls[index % 2]}/api/datasets/{dataset_id}/collections",
                files={"file": (path.name, path.read_bytes())},
            )
            assert response.status_code == 202, response.text
    wait_until_all_ready(deployment, dataset_id)

    jobs = assert_every_job_done_once(deployment, dataset_id)
    assert all(job.attempts == 1 for job in jobs), "no job ran twice"
    taken = [entry for worker in workers for entry in worker.jobs_taken()]
    assert sorted(cid for cid, _, _ in taken) == sorted(job.collection_id for job in jobs), (
        "each job started once, in one worker"
    )
    counts = dict(deployment.query("SELECT name, chunk_count FROM collection WHERE dataset_id = :d", d=dataset_id))
    stored = {name: len(chunks) for name, chunks in chunks_by_file(deployment, dataset_id).items()}
    assert stored == counts
    share = [len(worker.jobs_taken()) for worker in workers]
    log.info("jobs per worker: %s (the queue does not promise a fair share)", share)
    print(f"jobs per worker: {share}")
    # A worker refreshes the dataset's full-text statistics and postings just after marking its last job
    # done, so a search can straddle that commit; the two processes must agree once it is in.
    with httpx.Client(headers=ROOT, timeout=30) as client:

        def agree() -> bool:
            found = [
                client.post(f"{url}/api/datasets/{dataset_id}/search", json={"query": corpus[0].stem, "limit": 3})
                for url in urls
            ]
            assert [r.status_code for r in found] == [200, 200], [r.text for r in found]
            return bool(found[0].json()["results"]) and found[0].json()["results"] == found[1].json()["results"]

        deployment.wait_for(agree, "both API processes returning the same search results", 60)
    assert all(api.proc.poll() is None for api in apis), deployment.logs()
