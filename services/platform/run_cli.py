"""`parley run`, `parley shell`, `parley worker gateway` and `parley agents hash`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import signal
import sys
import uuid
from pathlib import Path

from schemas.envelopes import OutboundMessage, UserMessage
from schemas.project.loader import Project, load_project
from schemas.project.problems import ProjectError
from schemas.topics import Topic
from services.common import lifecycle
from services.common.clock import SystemClock
from services.common.kafka_bus import KafkaBus
from services.common.settings import BusSettings
from services.dialogue.store.settings import StoreSettings
from services.dialogue.store.sql_archive import SqlArchive
from services.gateway.auth import hash_password
from services.gateway.settings import GatewaySettings
from services.gateway.worker import GatewayWorker
from services.nlu.worker import NluService
from services.nlu.worker_cli import NluSettings, build_loader
from services.platform.adapters import NluParser, archive_trackers
from services.platform.analytics_adapter import ArchiveStatsSource
from services.platform.embedded import EmbeddedOptions, EmbeddedPlatform, demo_agents

logger = logging.getLogger(__name__)
SHELL_TURN_TIMEOUT_S = 30.0


def add_run_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    workers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    run = commands.add_parser(
        "run",
        help="every service in one process (memory bus, SQLite, in-process NLU): chat page, "
        "API and console on http://localhost:5005",
    )
    run.add_argument("--project", type=Path, default=Path("."), help="the bot project folder")
    run.add_argument("--model", type=Path, help="model archive or models folder")
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    run.add_argument("--port", type=int, default=5005)
    run.add_argument("--data", type=Path, help="SQLite files (default: <project>/.parley)")
    run.add_argument(
        "--agent-password",
        help="password of the console's `agent` account (default: a random one, printed); "
        "PARLEY_GATEWAY_AGENTS_FILE replaces the demo account",
    )
    run.set_defaults(func=cmd_run)

    shell = commands.add_parser(
        "shell", help="chat with the bot in the terminal (embedded mode, reminders included)"
    )
    shell.add_argument("--project", type=Path, default=Path("."))
    shell.add_argument("--model", type=Path)
    shell.add_argument("--data", type=Path)
    shell.add_argument("--sender", help="conversation id (default: a new one)")
    shell.set_defaults(func=cmd_shell)

    gateway = workers.add_parser(
        "gateway", help="channels (REST, websocket), Rasa's HTTP API, the handoff console"
    )
    gateway.add_argument("--project", type=Path, help="the bot project (its domain)")
    gateway.add_argument(
        "--model", type=Path, help="model archive or folder, for /model/parse (optional)"
    )
    gateway.add_argument("--port", type=int)
    gateway.set_defaults(func=cmd_worker_gateway)

    agents = commands.add_parser("agents", help="console accounts")
    agent_commands = agents.add_subparsers(dest="agents_command", metavar="ACTION", required=True)
    hashing = agent_commands.add_parser(
        "hash", help="print a password hash for PARLEY_GATEWAY_AGENTS_FILE (reads the password)"
    )
    hashing.set_defaults(func=cmd_agents_hash)


def _options(args: argparse.Namespace, **more: object) -> EmbeddedOptions:
    return EmbeddedOptions(
        project=args.project,
        model=args.model,
        data_dir=args.data,
        **more,  # type: ignore[arg-type]
    )


def cmd_run(args: argparse.Namespace, _: BusSettings) -> int:
    settings = GatewaySettings()
    agents, password = (None, None)
    if settings.agents_file is None:
        agents, password = demo_agents(args.agent_password)
    try:
        platform = EmbeddedPlatform(_options(args, host=args.host, port=args.port, agents=agents))
    except ProjectError as exc:
        logger.error("%s", exc)
        return 2
    return asyncio.run(_serve_platform(platform, password))


async def _serve_platform(platform: EmbeddedPlatform, password: str | None) -> int:
    """Start everything, say where it is, serve until SIGTERM/SIGINT, stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await platform.start()
    try:
        host = platform.options.host
        shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
        base = f"http://{shown}:{platform.gateway.port}"
        login = f"   (log in as agent / {password})" if password else ""
        print(
            f"\nParley is running: {platform.project.root.name}, model {platform.model.name}\n"
            f"  chat:     {base}/\n"
            f"  console:  {base}/console{login}\n"
            f"  API:      {base}/docs\n"
            "Press Ctrl+C to stop.\n",
            flush=True,
        )
        await stop.wait()
    finally:
        await platform.stop()
    return 0


def cmd_shell(args: argparse.Namespace, _: BusSettings) -> int:
    try:
        platform = EmbeddedPlatform(_options(args, serve_http=False))
    except ProjectError as exc:
        logger.error("%s", exc)
        return 2
    sender = args.sender or f"shell-{uuid.uuid4().hex[:8]}"
    return asyncio.run(_shell(platform, sender))


def _print_messages(outbound: OutboundMessage) -> None:
    who = "agent" if outbound.source == "agent" else "bot"
    for message in outbound.messages:
        if message.text:
            print(f"{who}: {message.text}", flush=True)
        if message.image:
            print(f"{who}: [image] {message.image}", flush=True)
        for button in message.buttons or []:
            print(f"      [{button.get('title')}] -> {button.get('payload')}", flush=True)
        if message.custom:
            print(f"{who}: [custom] {message.custom}", flush=True)


async def _shell(platform: EmbeddedPlatform, sender: str) -> int:
    await platform.start()

    async def show(outbound: OutboundMessage) -> None:
        _print_messages(outbound)

    disconnect = platform.gateway.hub.connect(sender, show)
    print(f"Chatting as {sender!r}; /stop or Ctrl+D to quit.", flush=True)
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                line = await loop.run_in_executor(None, sys.stdin.readline)
            except (KeyboardInterrupt, asyncio.CancelledError):
                break
            if not line or line.strip() == "/stop":
                break
            text = line.strip()
            if not text:
                continue

            async def send(message_id: str, text: str = text) -> None:
                await platform.gateway.bus.publish(
                    Topic.NLU,
                    UserMessage(
                        conversation_id=sender,
                        message_id=message_id,
                        correlation_id=message_id,
                        sent_at=platform.gateway.deps.clock.now(),
                        text=text,
                        input_channel="cmdline",
                    ),
                )

            # the bot's messages print as they come (reminders too); the next line is read
            # once this turn is complete, so piped input keeps the conversation's order
            _, complete = await platform.gateway.hub.ask(sender, send, SHELL_TURN_TIMEOUT_S)
            if not complete:
                print("(the bot is still working on it...)", flush=True)
    finally:
        disconnect()
        with contextlib.suppress(Exception):
            await platform.stop()
    return 0


def cmd_worker_gateway(args: argparse.Namespace, bus_settings: BusSettings) -> int:
    overrides = {"project": args.project, "port": args.port}
    settings = GatewaySettings(**{k: v for k, v in overrides.items() if v is not None})
    store = StoreSettings()
    if not store.database_url:
        logger.error("the gateway reads conversations from the SQL archive: set DATABASE_URL")
        return 2
    try:
        project = load_project(settings.project)
    except ProjectError as exc:
        logger.error("gateway cannot start: %s", exc)
        return 2
    return asyncio.run(_serve_gateway(settings, bus_settings, project, store, args.model))


async def _serve_gateway(
    settings: GatewaySettings,
    bus_settings: BusSettings,
    project: Project,
    store: StoreSettings,
    model: Path | None,
) -> int:
    parser = None
    if model is not None:
        nlu_settings = NluSettings(model=model)
        service = NluService(model, build_loader(nlu_settings), SystemClock())
        await service.reload_if_newer()
        parser = NluParser(service)
    assert store.database_url is not None
    archive = SqlArchive(store.database_url)
    await archive.start()
    worker = GatewayWorker(
        settings,
        KafkaBus(bus_settings),
        project,
        archive,
        archive_trackers(archive, project),
        parser=parser,
        stats=ArchiveStatsSource(archive),
    )
    try:
        return await lifecycle.serve(worker)
    finally:
        await archive.close()


def cmd_agents_hash(args: argparse.Namespace, _: BusSettings) -> int:
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline()
    password = password.rstrip("\n")
    if not password:
        logger.error("an empty password")
        return 2
    print(hash_password(password))
    return 0
