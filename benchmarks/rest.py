"""REST channel benchmark: Parley's example bot behind the gateway, measured with the very
script the peer (Rasa 3.6.21) was measured with (`../shared/bench/rest_bench.py`), in two modes
in the same run, beside the bus round trip:

- kafka: `parley worker nlu`, `dialogue`, `actions` and `gateway` as separate processes over
  the real Kafka, Redis and PostgreSQL (a fresh database and topic prefix per run);
- embedded: `parley run` (one process: memory bus, SQLite, in-process NLU).

    eval "$(scripts/services.sh env)"
    python -m benchmarks.rest [--project examples/bikeshop] [--duration 20]
        [--out results/bench-rest.json]

Per mode, rest_bench reports (a) sequential REST "hi" latency with a new sender per request,
(b) 16 concurrent clients (senders reused, then fresh), (c) `/model/parse` latency, (d) the
RSS summed over the mode's processes. The bus round trip (one message in flight through
Parley's Kafka bus, publish -> handled) is measured in the same run as the baseline: a REST
turn over Kafka is three hops (gateway -> NLU -> dialogue -> gateway) plus the work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
REST_BENCH = REPO.parent / "shared" / "bench" / "rest_bench.py"
PARLEY = str(Path(sys.executable).parent / "parley")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, procs: list[subprocess.Popen[bytes]], timeout_s: float = 180) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout_s:g}s")


def run_rest_bench(url: str, pids: list[int], out: Path, duration: float) -> dict[str, Any]:
    command = [
        sys.executable,
        str(REST_BENCH),
        "--url",
        url,
        "--duration",
        str(duration),
        "--json",
        str(out),
    ]
    for pid in pids:
        command += ["--pid", str(pid)]
    subprocess.run(command, check=True)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def fresh_database(url: str) -> str:
    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"parley_bench_{uuid.uuid4().hex[:10]}"
    parsed = make_url(url)
    admin = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        database="postgres",
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return parsed.set(database=name).render_as_string(hide_password=False)


def kafka_mode(project: Path, model: Path, workdir: Path, duration: float) -> dict[str, Any]:
    env = dict(os.environ)
    for needed in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "DATABASE_URL"):
        if needed not in env:
            raise SystemExit(f'{needed} is not set: eval "$(scripts/services.sh env)" first')
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    env["DATABASE_URL"] = asyncio.run(fresh_database(env["DATABASE_URL"]))
    env["PARLEY_TOPIC_PREFIX"] = prefix
    env["PARLEY_STORE_KEY_PREFIX"] = prefix
    port = free_port()
    workers = {
        "actions": ["--actions", str(project / "actions")],
        "dialogue": ["--project", str(project)],
        "nlu": ["--model", str(model)],
        "gateway": ["--project", str(project), "--model", str(model), "--port", str(port)],
    }
    health = {"actions": 0, "dialogue": 0, "nlu": 0}
    procs: list[subprocess.Popen[bytes]] = []
    subprocess.run([PARLEY, "topics", "create"], env=env, check=True)
    subprocess.run([PARLEY, "db", "upgrade"], env=env, check=True)
    try:
        for name, args in workers.items():
            worker_env = dict(env)
            if name in health:
                health[name] = free_port()
                worker_env[f"PARLEY_{name.upper()}_HEALTH_PORT"] = str(health[name])
            if name == "actions":
                worker_env["PARLEY_ACTIONS_HTTP_PORT"] = str(free_port())
            log = (workdir / f"{name}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [PARLEY, "worker", name, *args], env=worker_env, stdout=log, stderr=log
                )
            )
        started = time.perf_counter()
        for health_port in health.values():
            wait_ready(f"http://127.0.0.1:{health_port}/health/ready", procs)
        wait_ready(f"http://127.0.0.1:{port}/ready", procs)
        ready_s = time.perf_counter() - started
        result = run_rest_bench(
            f"http://127.0.0.1:{port}",
            [p.pid for p in procs],
            workdir / "kafka.json",
            duration,
        )
        result["ready_s"] = ready_s
        return result
    finally:
        stop(procs)


def embedded_mode(project: Path, model: Path, workdir: Path, duration: float) -> dict[str, Any]:
    port = free_port()
    log = (workdir / "embedded.log").open("wb")
    proc = subprocess.Popen(
        [
            PARLEY,
            "run",
            "--project",
            str(project),
            "--model",
            str(model),
            "--port",
            str(port),
            "--data",
            str(workdir / "embedded-data"),
        ],
        stdout=log,
        stderr=log,
    )
    try:
        ready_s = wait_ready(f"http://127.0.0.1:{port}/ready", [proc])
        result = run_rest_bench(
            f"http://127.0.0.1:{port}", [proc.pid], workdir / "embedded.json", duration
        )
        result["ready_s"] = ready_s
        return result
    finally:
        stop([proc])


def bus_round_trip(n: int) -> dict[str, float]:
    from benchmarks.bus import parley_side

    latencies, _ = asyncio.run(
        parley_side(os.environ["KAFKA_BOOTSTRAP_SERVERS"], round_trips=n, messages=200)
    )
    ordered = sorted(latencies)
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "n": len(ordered),
    }


def summary(name: str, result: dict[str, Any]) -> list[str]:
    seq = result.get("seq_webhook", {})
    lines = [f"{name}: ready {result.get('ready_s', 0):.1f}s after launch"]
    lines.append(
        f"  sequential REST 'hi' (new sender each): p50 {seq.get('p50')} ms, "
        f"p99 {seq.get('p99')} ms"
    )
    for phase in result.get("concurrent", []):
        lines.append(
            f"  {phase['concurrency']} concurrent, {phase['mode']} senders: "
            f"{phase.get('rps')} req/s, p50 {phase.get('p50')} ms, p99 {phase.get('p99')} ms, "
            f"errors {phase.get('errors')}"
        )
    parse = result.get("parse", {})
    lines.append(f"  /model/parse: p50 {parse.get('p50')} ms, p99 {parse.get('p99')} ms")
    memory = result.get("memory", {}).get("after_conc") or {}
    lines.append(f"  RSS after load: {memory.get('rss_mib')} MiB")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rest", description=__doc__)
    parser.add_argument("--project", type=Path, default=REPO / "examples" / "bikeshop")
    parser.add_argument("--model", type=Path, help="default: the project's newest archive")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--modes", nargs="+", default=["kafka", "embedded"])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench-rest.json")
    args = parser.parse_args(argv)
    if not REST_BENCH.is_file():
        raise SystemExit(f"{REST_BENCH} is missing: the peer's benchmark lives in ../shared")
    project = args.project.resolve()
    model = args.model or sorted((project / "models").glob("*.tar.gz"))[-1]
    workdir = Path(tempfile.mkdtemp(prefix="parley-bench-rest-"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "project": project.name,
        "model": model.name,
        "duration_s": args.duration,
    }
    if "kafka" in args.modes:
        results["bus_round_trip_before"] = bus_round_trip(300)
        results["kafka"] = kafka_mode(project, model, workdir, args.duration)
        results["bus_round_trip_after"] = bus_round_trip(300)
    if "embedded" in args.modes:
        results["embedded"] = embedded_mode(project, model, workdir, args.duration)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    for mode in ("kafka", "embedded"):
        if mode in results:
            print("\n".join(summary(mode, results[mode])))
    for key in ("bus_round_trip_before", "bus_round_trip_after"):
        if key in results:
            print(
                f"{key}: p50 {results[key]['p50_ms']:.1f} ms, p99 {results[key]['p99_ms']:.1f} ms"
            )
    print(f"results: {args.out} (logs in {workdir})")
    shutil.rmtree(workdir / "embedded-data", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
