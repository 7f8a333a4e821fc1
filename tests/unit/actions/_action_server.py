"""A real rasa-sdk action server (`python -m rasa_sdk --actions ...`) in a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

START_WITHIN_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def closed_port_url() -> str:
    """A webhook URL nothing listens on (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/webhook"


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def action_server(package: str, cwd: Path, log: Path) -> Iterator[str]:
    """Run `python -m rasa_sdk --actions <package>` in `cwd`; yield its webhook URL once
    `GET /health` answers 200; stop it (and its sanic worker) afterwards."""
    port = free_port()
    env = {**os.environ, "SANIC_HOST": "127.0.0.1", "PYTHONPATH": str(cwd)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "rasa_sdk", "--actions", package, "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the sanic worker goes with it
        )
        try:
            deadline = time.monotonic() + START_WITHIN_S
            while not _healthy(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"rasa-sdk did not start (exit {process.poll()}): "
                        f"{log.read_text(errors='replace')[-3000:]}"
                    )
                time.sleep(0.2)
            yield f"http://127.0.0.1:{port}/webhook"
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(15)
    with contextlib.suppress(ProcessLookupError):  # a worker that outlived its manager
        os.killpg(process.pid, signal.SIGKILL)
