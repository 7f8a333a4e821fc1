"""Wait until a Kafka cluster answers a metadata request (used by scripts/services.sh).

Exit status: 0 when it answered, 1 on timeout, 2 when the watched process died first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from typing import Any


async def _describe(bootstrap: str, seconds: float) -> dict[str, Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=max(1000, int(seconds * 1000))
    )
    try:
        async with asyncio.timeout(seconds):
            await admin.start()
            result: dict[str, Any] = await admin.describe_cluster()
            return result
    finally:
        # Closing a half-started client must not mask the real error.
        with contextlib.suppress(Exception):
            await admin.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--interval", type=float, default=0.3)
    parser.add_argument("--pid", type=int, default=0, help="give up when this process dies")
    args = parser.parse_args()

    logging.basicConfig(level=logging.CRITICAL)
    deadline = time.monotonic() + args.timeout
    last_error: BaseException | None = None
    while True:
        if args.pid and not _alive(args.pid):
            print(f"process {args.pid} exited", file=sys.stderr)
            return 2
        remaining = deadline - time.monotonic()
        try:
            cluster = asyncio.run(_describe(args.bootstrap, max(1.0, min(5.0, remaining))))
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = exc
        else:
            brokers = cluster.get("brokers") or []
            print(f"cluster {cluster.get('cluster_id')} answers with {len(brokers)} broker(s)")
            return 0
        if time.monotonic() >= deadline:
            print(f"no metadata from {args.bootstrap}: {last_error!r}", file=sys.stderr)
            return 1
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
