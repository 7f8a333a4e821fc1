"""Memory of the NLU worker process: `parley worker nlu` with a model, under real Kafka traffic.

    python -m benchmarks.nlu_worker_rss --model results/nlu-snips/models [--messages 500]
        [--backend onnxruntime|triton]

Starts the worker as its own process (topics under a fresh prefix), waits for
`/health/ready`, sends `--messages` SNIPS test utterances through `parley.nlu`, waits for every
`UserUttered` on `parley.dialogue`, then reads the worker's resident memory (VmRSS) and its peak
(VmHWM) from /proc and stops it with SIGTERM (its exit code is reported).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

from schemas.envelopes import ParsedUserMessage, UserMessage
from schemas.project.loader import read_nlu_file
from schemas.topics import Topic
from services.common.bus import Publication, Subscription
from services.common.kafka_bus import KafkaBus
from services.common.settings import BusSettings

REPO = Path(__file__).resolve().parents[1]
SNIPS_TEST = REPO.parent / "shared" / "data" / "nlu" / "snips" / "yaml" / "test.yml"


def _memory(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024  # kB -> MiB
    return {"rss_mib": round(fields["VmRSS"], 1), "peak_rss_mib": round(fields["VmHWM"], 1)}


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


async def run(args: argparse.Namespace) -> dict[str, object]:
    prefix = f"rss{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PARLEY_TOPIC_PREFIX": prefix,
        "PARLEY_NLU_BACKEND": args.backend,
        "PARLEY_NLU_TRITON_GRPC_URL": os.environ.get("TRITON_GRPC_URL", "127.0.0.1:18001"),
    }
    port = args.health_port
    command = [
        sys.executable, "-m", "services.cli", "worker", "nlu",
        "--model", str(args.model), "--health-port", str(port),
    ]  # fmt: skip
    started = time.perf_counter()
    worker = subprocess.Popen(command, env=env)  # noqa: ASYNC220 - started once, polled
    try:
        while not _ready(port):
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited with {worker.returncode} before it was ready")
            await asyncio.sleep(0.1)
        ready_s = time.perf_counter() - started
        idle = _memory(worker.pid)
        texts = [e.text for e in read_nlu_file(args.utterances)[0].examples]
        settings = BusSettings(topic_prefix=prefix)
        bus = KafkaBus(settings)
        done = asyncio.Event()
        seen = 0

        async def count(message: ParsedUserMessage) -> list[Publication]:
            nonlocal seen
            seen += 1
            if seen >= args.messages:
                done.set()
            return []

        bus.subscribe(Subscription(Topic.DIALOGUE, f"{prefix}-probe", count, ParsedUserMessage))
        await bus.start()
        try:
            t0 = time.perf_counter()
            for i in range(args.messages):
                await bus.publish(
                    Topic.NLU,
                    UserMessage(
                        conversation_id=f"user-{i % 32}",
                        text=texts[i % len(texts)],
                        sent_at=datetime.now(UTC),
                    ),
                )
            await asyncio.wait_for(done.wait(), 300)
            elapsed = time.perf_counter() - t0
        finally:
            await bus.stop()
        loaded = _memory(worker.pid)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
    return {
        "model": str(args.model),
        "backend": args.backend,
        "messages": args.messages,
        "messages_per_s": round(args.messages / elapsed, 1),
        "ready_after_s": round(ready_s, 1),
        "idle": idle,
        "after_traffic": loaded,
        "exit_code_on_sigterm": code,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--backend", choices=("onnxruntime", "triton"), default="onnxruntime")
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--utterances", type=Path, default=SNIPS_TEST)
    parser.add_argument("--health-port", type=int, default=18081)
    parser.add_argument("--out", type=Path, default=Path("results/bench-nlu-worker-rss.json"))
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
