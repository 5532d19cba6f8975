"""``slmkit serve`` under load on loopback: concurrency 1, 8 and 32 against ``POST /ask``.

The server runs as its own process exactly as a user starts it (``slmkit serve --kb ...``) over the
full SQuAD KB; clients send SQuAD eval questions (answerable and not), with a bounded number of
requests per level and a time limit. Reported per level: requests/s, p50/p99 latency, errors
(anything but 200; the goal is 0: the queue, ``--max-queue 64``, holds every waiting request).

One model generates one answer at a time (a 2-core CPU is not faster in parallel), so throughput
should stay flat as concurrency rises while latency grows with the queue; ``ratio`` = requests/s at
concurrency 8 / requests/s at concurrency 1 (the single-client baseline in the same run).

    python benchmarks/serve_load.py [--backend transformers|llama.cpp] [--requests 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from _common import KB_PATH, emit, squad_kb
from ask_latency import sample_questions

LEVELS = (1, 8, 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(backend: str, port: int) -> subprocess.Popen:
    slmkit = Path(sys.executable).parent / "slmkit"
    command = [str(slmkit), "serve", "--kb", str(KB_PATH), "--backend", backend, "--port", str(port)]
    command += ["--max-queue", "64", "--max-new-tokens", "32"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"slmkit serve exited: {server.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("slmkit serve did not start within 10 minutes")


async def run_level(url: str, questions: list[str], concurrency: int, total: int, limit_s: float) -> dict:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(questions[i % len(questions)])
    deadline = time.monotonic() + limit_s

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty() and time.monotonic() < deadline:
            question = queue.get_nowait()
            start = time.perf_counter()
            try:
                response = await http.post(f"{url}/ask", json={"question": question}, timeout=limit_s)
                key = str(response.status_code)
            except httpx.HTTPError as err:
                key = type(err).__name__
            latencies.append(time.perf_counter() - start)
            statuses[key] = statuses.get(key, 0) + 1

    started = time.perf_counter()
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    wall = time.perf_counter() - started
    done = statuses.get("200", 0)
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "ok": done,
        "errors": len(latencies) - done,
        "statuses": statuses,
        "requests_per_s": round(done / wall, 3),
        "p50_s": round(statistics.median(latencies), 3),
        "p99_s": round(cuts[98], 3),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    # auto: the engine `slmkit serve` picks by default (llama.cpp where installed).
    parser.add_argument("--backend", default="auto", choices=["auto", "transformers", "llama.cpp"])
    parser.add_argument("--requests", type=int, default=2, help="Requests per client slot and level.")
    parser.add_argument("--limit-s", type=float, default=600, help="Time limit per level.")
    args = parser.parse_args()
    squad_kb()
    questions = [q for q, _ in sample_questions(64)]
    port = free_port()
    server = start_server(args.backend, port)
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(run_level(url, questions[:2], 1, 2, args.limit_s))  # warm-up
        levels = [
            asyncio.run(run_level(url, questions, c, max(8, c * args.requests), args.limit_s)) for c in LEVELS
        ]
    finally:
        server.terminate()
        server.wait(timeout=30)
    by_level = {level["concurrency"]: level for level in levels}
    emit(
        {
            "benchmark": "serve_load",
            "backend": args.backend,
            "levels": levels,
            "errors": sum(level["errors"] for level in levels),
            "baseline": "requests/s at concurrency 1 (same server, same run)",
            "ratio": round(by_level[8]["requests_per_s"] / by_level[1]["requests_per_s"], 3),
        }
    )


if __name__ == "__main__":
    main()
