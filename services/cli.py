"""The `parley` command line: the composition root that wires settings, logging and services."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from schemas.topics import TOPICS, Topic
from services.common.correlation import configure_logging
from services.common.errors import ParleyError
from services.common.settings import BusSettings

logger = logging.getLogger("parley")


def _version() -> str:
    try:
        return version("parley")
    except PackageNotFoundError:
        return "unknown"


def cmd_topics_list(args: argparse.Namespace, settings: BusSettings) -> int:
    rows = [("topic", "partitions", "key", "payload", "producers", "consumers")]
    for spec in TOPICS:
        rows.append(
            (
                settings.physical(spec.topic),
                str(settings.partitions_of(spec.topic)),
                spec.key,
                spec.payload_name,
                ", ".join(spec.producers),
                ", ".join(spec.consumers),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def cmd_topics_create(args: argparse.Namespace, settings: BusSettings) -> int:
    from services.common.kafka_bus import ensure_topics

    created = asyncio.run(ensure_topics(settings, list(Topic)))
    if created:
        print(
            f"created {len(created)} topic(s) on {settings.kafka_bootstrap_servers}: "
            + ", ".join(created)
        )
    else:
        print(f"all {len(Topic)} topics already exist on {settings.kafka_bootstrap_servers}")
    return 0


def cmd_schemas(args: argparse.Namespace, settings: BusSettings) -> int:
    from schemas import generate

    return generate.main(["--check"] if args.check else [])


def _root_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[Any]]:
    parser = argparse.ArgumentParser(
        prog="parley",
        description="Parley: Rasa 3.x bots as event-driven services over Kafka.",
    )
    parser.add_argument("--version", action="version", version=f"parley {_version()}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    return parser, commands


def _analytics_parser() -> argparse.ArgumentParser:
    """Only `stats` (and `export conversations`): they answer in seconds, so they do not
    pay for importing every service's command (the NLU, torch-free as it is, the gateway)."""
    from services.platform.stats_cli import add_stats_commands

    parser, commands = _root_parser()
    add_stats_commands(commands)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The sub-command named in `argv` (skipping `--log-level LEVEL`)."""
    words = iter(argv)
    for word in words:
        if word == "--log-level":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser() -> argparse.ArgumentParser:
    # Imported here, not at the top: `parley stats` starts without them (see main).
    from services.actions.worker_cli import add_worker_actions
    from services.dialogue.store.db_cli import add_db_command
    from services.dialogue.test_stories_cli import add_test_stories
    from services.dialogue.visualize_cli import add_visualize_command
    from services.dialogue.worker_cli import add_worker_dialogue
    from services.nlu.evaluate_cli import add_test_command
    from services.nlu.export_cli import add_export_command
    from services.nlu.worker_cli import add_worker_nlu
    from services.platform.run_cli import add_run_commands
    from services.platform.stats_cli import add_stats_commands
    from services.scheduler.worker_cli import add_worker_scheduler
    from services.story_backends import in_process_backends
    from services.train_cli import add_train_command
    from services.validate_cli import add_validate_command

    parser, commands = _root_parser()

    topics = commands.add_parser("topics", help="list the bus topics or create them on Kafka")
    topic_commands = topics.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    topic_commands.add_parser(
        "list", help="name, partitions, key, payload, producers and consumers of every topic"
    ).set_defaults(func=cmd_topics_list)
    topic_commands.add_parser(
        "create", help="create the missing topics on KAFKA_BOOTSTRAP_SERVERS"
    ).set_defaults(func=cmd_topics_create)

    schemas = commands.add_parser(
        "schemas", help="write the JSON Schema and AsyncAPI files under schemas/generated/"
    )
    schemas.add_argument("--check", action="store_true", help="only check they are up to date")
    schemas.set_defaults(func=cmd_schemas)
    add_validate_command(commands)
    add_visualize_command(commands)
    add_db_command(commands)
    add_export_command(commands)
    add_train_command(commands)
    test_targets = add_test_command(commands)
    add_test_stories(test_targets, in_process_backends())
    worker = commands.add_parser("worker", help="run one of Parley's services")
    workers = worker.add_subparsers(dest="worker", metavar="SERVICE", required=True)
    add_worker_nlu(workers)
    add_worker_actions(workers)
    add_worker_scheduler(workers)
    add_worker_dialogue(workers)
    add_run_commands(commands, workers)
    add_stats_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = _analytics_parser() if _command_of(words) == "stats" else build_parser()
    args = parser.parse_args(words)
    configure_logging(args.log_level.upper())
    settings = BusSettings()
    try:
        return int(args.func(args, settings))
    except KeyboardInterrupt:
        return 130
    except (ParleyError, OSError) as exc:
        logger.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
