"""Load benchmark: 20 clients searching and 2 streaming chats against a real `kb serve`, with a 1-client baseline.

    PYTHONPATH=. python bench/load.py                       # 60 s of load
    PYTHONPATH=. python bench/load.py --duration 10 --json /tmp/load.json

The SQuAD kit's dataset and app come from the answer benchmark's database under bench/.cache
(ingested through kb's collections and worker the first time, reused after). A `kb serve` subprocess
(loopback, a free port, the bundled MiniLM embedder and SmolLM2 chat model) runs against it with a
root key for search and an app key created for the run (revoked at the end) for chat.

Phases, one after the other: warm-up (models load, then a few seconds of the full mix, not
recorded); baseline (1 search client alone for a few seconds, then a few chats one at a time);
load (`--clients` search clients looping `POST /api/datasets/{id}/search` and `--chats` clients
streaming `/v1/chat/completions` to `[DONE]`, each request a new kit question). It reports latency
p50/p95/p99 (search: whole response; chat: first token and total), throughput, errors by kind,
the server's RSS (in all, and by process: kb serve and the llama.cpp child that runs a GGUF chat
model) with its trend over the load and over the load's second half, and the database connections it
holds, sampled from after the warm-up to the end, and the load average.
Exits 1 when any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import psutil  # noqa: E402
import psycopg  # noqa: E402

from bench.answer import bench_database, kit_app, kit_dataset  # noqa: E402
from bench.retrieval import CACHE, load_questions, percentile, shared_data  # noqa: E402
from kb.config import Settings  # noqa: E402
from kb.db.engine import Database  # noqa: E402
from kb.ml.registry import get_registry  # noqa: E402
from kb.runtime import Runtime  # noqa: E402
from kb.services import keys as key_service  # noqa: E402

KIT = "squad_dev_kit"
SERVER_LOG = CACHE / "load-server.log"
SERVER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "KB_CHAT_MODEL": "smollm2",
    "KB_EMBED_MODEL": "minilm",
    "KB_TORCH_THREADS": "2",
    "KB_LOG_LEVEL": "WARNING",
    "KB_SHUTDOWN_GRACE_SECONDS": "5",
}
# Each request is bounded as a whole by asyncio.timeout (--search-timeout, --chat-timeout); httpx only bounds connecting.
HTTP_TIMEOUT = httpx.Timeout(None, connect=10)


@dataclass(frozen=True)
class Target:
    """What the clients call: the server, the dataset to search, the app to chat with, and the keys."""

    base_url: str
    root_key: str
    app_key: str
    dataset_id: int
    app_name: str


@dataclass
class Stream:
    """One kind of request in one phase: latencies, tokens, the server's timings, failures, how long it ran."""

    latencies_ms: list[float] = field(default_factory=list)
    first_token_ms: list[float] = field(default_factory=list)
    tokens: int = 0
    prompt_tokens: int = 0
    server_ms: Counter = field(default_factory=Counter)  # the server's own timings of its steps, summed
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0


# --- preparing the data and the server -------------------------------------------------------------


def prepare(rebuild: bool) -> tuple[Database, int, int, str]:
    """The database with the kit's dataset and app (built once, cached); returns db, dataset id, app id, app name."""
    url = bench_database(rebuild)
    settings = Settings(_env_file=None, database_url=url, data_dir=CACHE / "data")
    rt = Runtime(settings, Database(url), get_registry(settings))
    kit = shared_data() / KIT
    app = kit_app(rt, KIT, kit_dataset(rt, kit), {})
    return rt.db, app.dataset_ids[0], app.id, app.name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the benchmark dies, even by SIGKILL, so no server is left behind."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextmanager
def kb_server(db_url: str, root_key: str, port: int, start_timeout: float, chat_model: str):
    """A `kb serve` subprocess on 127.0.0.1:port, healthy when this yields it; stopped (its group killed) on exit."""
    env = {
        **os.environ,
        **SERVER_ENV,
        "KB_CHAT_MODEL": chat_model,
        "PYTHONPATH": str(REPO),
        "KB_DATA_DIR": str(CACHE / "data"),
        "KB_DATABASE_URL": db_url,
        "KB_ROOT_KEY": root_key,
    }
    SERVER_LOG.parent.mkdir(parents=True, exist_ok=True)
    log = SERVER_LOG.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "kb.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        wait_healthy(process, f"http://127.0.0.1:{port}", start_timeout)
        yield process
    finally:
        stop_server(process)
        log.close()


def wait_healthy(process: subprocess.Popen, base_url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"kb serve exited with {process.returncode}; see {SERVER_LOG}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"kb serve was not healthy after {timeout:.0f} s; see {SERVER_LOG}")


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL if it is still there 15 s later."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue


def rss_by_process(pid: int) -> dict[str, int]:
    """Resident memory of a process ("kb serve") and its descendants, summed by the module or program each runs."""
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    sizes: Counter[str] = Counter()
    for member in members:
        try:
            sizes[_role(member, root)] += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return dict(sizes)


def _role(process, root) -> str:
    if process.pid == root.pid:
        return "kb serve"
    command = process.cmdline()
    return command[command.index("-m") + 1] if "-m" in command[:-1] else process.name()


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- the clients ------------------------------------------------------------------------------------


def error_kind(exc: BaseException) -> str:
    return "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__


async def search_once(client: httpx.AsyncClient, target: Target, question: str, stream: Stream, timeout: float) -> None:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            response = await client.post(
                f"/api/datasets/{target.dataset_id}/search",
                json={"query": question, "mode": "hybrid"},
                headers={"Authorization": f"Bearer {target.root_key}"},
            )
        if response.status_code != 200:
            stream.errors[f"search HTTP {response.status_code}"] += 1
            return
        body = response.json()
        if not isinstance(body.get("results"), list):
            stream.errors["search body without results"] += 1
            return
    except Exception as exc:  # any failure is counted by kind, never fatal
        stream.errors[f"search {error_kind(exc)}"] += 1
        return
    stream.latencies_ms.append((time.perf_counter() - started) * 1000)
    stream.server_ms.update(body.get("timings", {}))


async def chat_once(
    client: httpx.AsyncClient, target: Target, question: str, stream: Stream, timeout: float, max_tokens: int
) -> None:
    """One streamed app chat read to `[DONE]`: time to the first non-empty piece and to the end."""
    body = {
        "model": f"app:{target.app_name}",
        "messages": [{"role": "user", "content": question}],
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream_options": {"include_usage": True},
        "detail": True,
    }
    started, first, done, usage, timings = time.perf_counter(), None, False, {}, {}
    try:
        async with asyncio.timeout(timeout):
            async with client.stream(
                "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {target.app_key}"}
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    stream.errors[f"chat HTTP {response.status_code}"] += 1
                    return
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line.removeprefix("data: ")
                    if data == "[DONE]":
                        done = True
                        break
                    event = json.loads(data)
                    if "error" in event:
                        stream.errors[f"chat stream error {event['error'].get('code')}"] += 1
                        return
                    usage = event.get("usage") or usage
                    timings = event.get("timings") or timings
                    if first is None and any(c["delta"].get("content") for c in event.get("choices", [])):
                        first = time.perf_counter()
    except Exception as exc:
        stream.errors[f"chat {error_kind(exc)}"] += 1
        return
    if not done:
        stream.errors["chat ended without [DONE]"] += 1
        return
    stream.latencies_ms.append((time.perf_counter() - started) * 1000)
    if first is not None:
        stream.first_token_ms.append((first - started) * 1000)
    stream.tokens += usage.get("completion_tokens", 0)
    stream.prompt_tokens += usage.get("prompt_tokens", 0)
    stream.server_ms.update({step: value for step, value in timings.items() if value is not None})


async def client_loop(target: Target, deadline: float, questions: list[str], ask, rounds: int | None) -> None:
    """One client on its own connection: ask the next question (round and round) until the deadline or `rounds`."""
    async with httpx.AsyncClient(base_url=target.base_url, timeout=HTTP_TIMEOUT) as client:
        for question in itertools.islice(itertools.cycle(questions), rounds):
            if time.monotonic() >= deadline:
                return
            await ask(client, question)


@dataclass(frozen=True)
class Limits:
    """Per-request bounds: whole-request timeouts and the chat's answer length."""

    search_timeout: float
    chat_timeout: float
    max_tokens: int


async def run_phase(
    target: Target,
    searchers: int,
    chatters: int,
    seconds: float,
    questions: list[str],
    limits: Limits,
    rng: random.Random,
    rounds: int | None = None,
) -> dict[str, Stream]:
    """`searchers` + `chatters` clients loop for `seconds` (or `rounds` requests each), each on its own shuffle of
    the questions; requests started before the end are waited for (each is bounded by its timeout)."""
    search, chat = Stream(), Stream()

    async def ask_search(client, question):
        await search_once(client, target, question, search, limits.search_timeout)

    async def ask_chat(client, question):
        await chat_once(client, target, question, chat, limits.chat_timeout, limits.max_tokens)

    async def timed(stream: Stream, loop) -> None:
        started = time.monotonic()
        await loop
        stream.seconds = max(stream.seconds, time.monotonic() - started)

    deadline = time.monotonic() + seconds
    clients = [(search, ask_search)] * searchers + [(chat, ask_chat)] * chatters
    await asyncio.gather(
        *(
            timed(stream, client_loop(target, deadline, rng.sample(questions, len(questions)), ask, rounds))
            for stream, ask in clients
        )
    )
    return {"search": search, "chat": chat}


async def warm_up(target: Target, args, questions: list[str], limits: Limits, rng: random.Random) -> Counter:
    """Load both models with one search and one chat, then run the full mix unrecorded; returns the errors seen."""
    first = Stream()
    async with httpx.AsyncClient(base_url=target.base_url, timeout=HTTP_TIMEOUT) as client:
        await search_once(client, target, questions[0], first, limits.search_timeout * 4)  # the embedder loads here
        await chat_once(
            client, target, questions[1], first, limits.chat_timeout * 2, limits.max_tokens
        )  # and the chat model
    errors = Counter(first.errors)
    for stream in (await run_phase(target, args.clients, args.chats, args.warmup, questions, limits, rng)).values():
        errors.update(stream.errors)
    return errors


@dataclass
class Probe:
    """Samples the server: its RSS and the database connections it holds (the bench holds none meanwhile)."""

    pid: int
    conn: psycopg.Connection
    started: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, dict[str, int], int]] = field(default_factory=list)

    def sample(self) -> None:
        connections = self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
        self.samples.append((round(time.monotonic() - self.started, 1), rss_by_process(self.pid), connections))

    async def every(self, seconds: float) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(seconds)


async def run_all(target: Target, probe: Probe, args, questions: list[str]) -> dict:
    """Warm-up, baseline (1 search client, then a few chats one at a time) and load; the raw results."""
    rng = random.Random(args.seed)
    limits = Limits(args.search_timeout, args.chat_timeout, args.max_tokens)
    print(f"warm-up: one search and one chat (the models load), then the full mix for {args.warmup:.0f} s", flush=True)
    warm_errors = await warm_up(target, args, questions, limits, rng)
    probe.started = time.monotonic()
    sampler = asyncio.create_task(probe.every(args.sample_every))
    try:
        print(
            f"baseline: 1 search client for {args.baseline:.0f} s, then {args.baseline_chats} chats one at a time",
            flush=True,
        )
        base_search = (await run_phase(target, 1, 0, args.baseline, questions, limits, rng))["search"]
        base_chat = (await run_phase(target, 0, 1, math.inf, questions, limits, rng, rounds=args.baseline_chats))[
            "chat"
        ]
        print(
            f"load: {args.clients} search clients and {args.chats} chat clients for {args.duration:.0f} s", flush=True
        )
        load_started = time.monotonic() - probe.started
        loaded = await run_phase(target, args.clients, args.chats, args.duration, questions, limits, rng)
    finally:
        sampler.cancel()
    probe.sample()
    return {
        "warm_errors": warm_errors,
        "baseline": {"search": base_search, "chat": base_chat},
        "load": loaded,
        "samples": probe.samples,
        "load_started": load_started,
    }


# --- the report -------------------------------------------------------------------------------------


def spread(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    return {
        "p50": statistics.median(values),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": max(values),
    }


def summary(stream: Stream, clients: int) -> dict:
    done = len(stream.latencies_ms)
    return {
        "clients": clients,
        "completed": done,
        "errors": sum(stream.errors.values()),
        "seconds": round(stream.seconds, 1),
        "per_second": done / stream.seconds if stream.seconds else 0.0,
        "latency_ms": spread(stream.latencies_ms),
        "first_token_ms": spread(stream.first_token_ms),
        "tokens_per_second": stream.tokens / stream.seconds if stream.seconds else 0.0,
        "mean_prompt_tokens": round(stream.prompt_tokens / done) if done else None,
        "server_mean_ms": {
            step.removesuffix("_ms"): round(total / done, 1) for step, total in stream.server_ms.items()
        },
    }


def ratio(loaded: float | None, base: float | None) -> float | None:
    return loaded / base if loaded and base else None


def build_report(raw: dict, args, load_before: str, load_after: str) -> dict:
    base = {"search": summary(raw["baseline"]["search"], 1), "chat": summary(raw["baseline"]["chat"], 1)}
    load = {"search": summary(raw["load"]["search"], args.clients), "chat": summary(raw["load"]["chat"], args.chats)}
    errors = Counter(raw["warm_errors"])
    for phase in (raw["baseline"], raw["load"]):
        for stream in phase.values():
            errors.update(stream.errors)
    if raw["server_exit"] is not None:
        errors[f"kb serve exited with {raw['server_exit']}"] += 1
    samples = raw["samples"]
    roles = sorted({role for _, sizes, _ in samples for role in sizes}, key=lambda role: role != "kb serve")
    rss = {"all": memory_trend(samples, raw["load_started"], None)}
    if len(roles) > 1:
        rss.update({role: memory_trend(samples, raw["load_started"], role) for role in roles})
    return {
        "duration_s": args.duration,
        "clients": args.clients,
        "chats": args.chats,
        "chat_model": args.chat_model,
        "max_tokens": args.max_tokens,
        "load_average": {"start": load_before, "end": load_after},
        "baseline": base,
        "load": load,
        "ratios": {
            "search p50": ratio(load["search"]["latency_ms"]["p50"], base["search"]["latency_ms"]["p50"]),
            "search p95": ratio(load["search"]["latency_ms"]["p95"], base["search"]["latency_ms"]["p95"]),
            "search throughput": ratio(load["search"]["per_second"], base["search"]["per_second"]),
            "chat first token p50": ratio(load["chat"]["first_token_ms"]["p50"], base["chat"]["first_token_ms"]["p50"]),
            "chat total p50": ratio(load["chat"]["latency_ms"]["p50"], base["chat"]["latency_ms"]["p50"]),
        },
        "errors": dict(errors),
        "rss_mb": rss,
        "db_connections_max": max(connections for *_, connections in samples),
        "samples": [
            {"s": t, "rss_mb": {role: round(size / 2**20) for role, size in sizes.items()}, "db_connections": c}
            for t, sizes, c in samples
        ],
    }


def memory_trend(samples: list, load_started: float, role: str | None) -> dict:
    """One process's RSS (or, with no role, the sum of all) in MB: after warm-up, as the load began, at the end, and
    the least-squares trend in MB/min over the whole load and over its second half. A cache that fills up to its cap
    early in the load (llama.cpp's prompt cache) shows in the first trend and not in the second; a leak shows in both."""
    mb = 2**20
    series = [(t, (sum(sizes.values()) if role is None else sizes.get(role, 0)) / mb) for t, sizes, _ in samples]
    loaded = [(t, size) for t, size in series if t >= load_started]
    return {
        "start": series[0][1],
        "load_start": loaded[0][1],
        "end": series[-1][1],
        "max": max(size for _, size in series),
        "load_slope_per_minute": _slope_per_minute(loaded),
        "second_half_slope_per_minute": _slope_per_minute(loaded[len(loaded) // 2 :]),
    }


def _slope_per_minute(series: list[tuple[float, float]]) -> float:
    return statistics.linear_regression(*zip(*series)).slope * 60 if len(series) > 2 else 0.0


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"kb serve under load ({report['clients']} search + {report['chats']} chat clients, "
        f"{report['duration_s']:.0f} s; baseline: 1 client alone)"
    )
    for name, justify in (
        ("phase", "left"),
        ("requests", "left"),
        ("clients", "right"),
        ("done", "right"),
        ("errors", "right"),
        ("rate", "right"),
        ("p50 ms", "right"),
        ("p95 ms", "right"),
        ("p99 ms", "right"),
        ("max ms", "right"),
    ):
        table.add_column(name, justify=justify)
    for phase in ("baseline", "load"):
        for kind in ("search", "chat"):
            row = report[phase][kind]
            rate = f"{row['per_second']:.2f} req/s" if kind == "search" else f"{row['tokens_per_second']:.1f} tok/s"
            lines = (
                [("search", row["latency_ms"])]
                if kind == "search"
                else [("chat first token", row["first_token_ms"]), ("chat total", row["latency_ms"])]
            )
            for index, (label, spread_) in enumerate(lines):
                counts = (
                    [str(row["clients"]), str(row["completed"]), str(row["errors"]), rate] if index == 0 else [""] * 4
                )
                table.add_row(phase, label, *counts, *(_ms(spread_[p]) for p in ("p50", "p95", "p99", "max")))
    console = Console(width=max(Console().width, 120))
    console.print(table)
    for phase in ("baseline", "load"):
        for kind in ("search", "chat"):
            steps = ", ".join(f"{k} {v:,.0f}" for k, v in report[phase][kind]["server_mean_ms"].items())
            console.print(f"{phase} {kind}, server's mean ms by step: {steps or '–'}")
    console.print(f"chat prompts: {report['load']['chat']['mean_prompt_tokens']} tokens on average (quotes included)")
    ratios = ", ".join(f"{k} {v:.2f}×" for k, v in report["ratios"].items() if v is not None)
    console.print(f"loaded / baseline: {ratios}")
    for role, rss in report["rss_mb"].items():
        name = "server RSS (children included)" if role == "all" else f"  of which {role}"
        console.print(
            f"{name}: {rss['start']:,.0f} MB after warm-up, {rss['load_start']:,.0f} MB as the load began, "
            f"{rss['end']:,.0f} MB at the end (max {rss['max']:,.0f} MB; end - load start "
            f"{rss['end'] - rss['load_start']:+,.0f} MB; trend over the load {rss['load_slope_per_minute']:+,.0f} MB/min, "
            f"over its second half {rss['second_half_slope_per_minute']:+,.0f} MB/min)"
        )
    console.print(f"database connections held by the server: at most {report['db_connections_max']} (sampled)")
    console.print(f"load average: {report['load_average']['start']} at start, {report['load_average']['end']} at end")
    errors = report["errors"]
    console.print("errors: " + (", ".join(f"{k} ×{v}" for k, v in sorted(errors.items())) if errors else "none"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of load")
    parser.add_argument("--clients", type=int, default=20, help="concurrent search clients")
    parser.add_argument("--chats", type=int, default=2, help="concurrent streaming chat clients")
    parser.add_argument("--baseline", type=float, default=10, help="seconds of the 1-client search baseline")
    parser.add_argument("--baseline-chats", type=int, default=3, help="chats of the 1-client chat baseline")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of the full mix before measuring")
    parser.add_argument("--max-tokens", type=int, default=64, help="longest chat answer")
    parser.add_argument("--search-timeout", type=float, default=30, help="seconds one search may take in all")
    parser.add_argument("--chat-timeout", type=float, default=120, help="seconds one chat may take in all")
    parser.add_argument("--sample-every", type=float, default=2, help="seconds between RSS / connection samples")
    parser.add_argument("--start-timeout", type=float, default=180, help="seconds kb serve may take to be healthy")
    parser.add_argument("--seed", type=int, default=8, help="seed for the question order")
    parser.add_argument(
        "--chat-model", default=SERVER_ENV["KB_CHAT_MODEL"], help="the server's chat model (default: the small one)"
    )
    parser.add_argument("--rebuild", action="store_true", help="ingest the kit again into a fresh database")
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    args = parser.parse_args()
    # Ctrl-C and a kill end the run through the same clean-up; INT too, as a shell's `cmd &` starts it ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
    try:
        report = measure(args)
    except KeyboardInterrupt:
        print("interrupted: kb serve stopped, the run's key revoked", file=sys.stderr)
        sys.exit(130)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    sys.exit(1 if report["errors"] else 0)


def measure(args) -> dict:
    """Prepare the data, start kb serve, run the phases, stop it; the report."""
    db, dataset_id, app_id, app_name = prepare(args.rebuild)
    questions = [q.question for q in load_questions(shared_data() / KIT)]
    created = key_service.create_key(db, name="bench-load", app_id=app_id)
    root_key, port = secrets.token_urlsafe(24), free_port()
    try:
        target = Target(f"http://127.0.0.1:{port}", root_key, created.key, dataset_id, app_name)
        print(f"starting kb serve on {target.base_url} (log: {SERVER_LOG})", flush=True)
        load_before = load_average()
        db.dispose()  # the bench's own connections would count as the server's
        with (
            kb_server(db.url, root_key, port, args.start_timeout, args.chat_model) as server,
            psycopg.connect(db.libpq_url, autocommit=True) as conn,
        ):
            raw = asyncio.run(run_all(target, Probe(server.pid, conn), args, questions))
            raw["server_exit"] = server.poll()
        return build_report(raw, args, load_before, load_average())
    finally:
        key_service.revoke_key(db, created.record.id)
        db.dispose()


if __name__ == "__main__":
    main()
