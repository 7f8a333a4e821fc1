"""`parley visualize`: draw a bot project's stories and rules as one graph."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from schemas.project.loader import read_project
from schemas.project.problems import Level
from schemas.project.story_graph import build_story_graph
from services.dialogue.visualize import FORMATS, Format, VisualizeError, render

SUFFIXES: dict[str, Format] = {".html": "html", ".htm": "html", ".svg": "svg", ".png": "png"}


def add_visualize_command(subparsers: Any) -> None:
    """Register `visualize` on the CLI's subparsers; its handler is `(args, settings) -> int`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "visualize",
        help="draw the stories and rules of a bot project as a graph (HTML, SVG or PNG)",
        description="Draw a Rasa project's stories and rules as one graph: equivalent paths "
        "share nodes (up to --max-history steps back); rules are dashed.",
    )
    parser.add_argument(
        "--project",
        default=".",
        metavar="DIR",
        help="the bot project folder (default: the current folder)",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="PATH",
        help="the file to write (default: graph.html, or graph.<format>)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="html, svg or png (default: from the --out suffix, else html)",
    )
    parser.add_argument(
        "--max-history",
        type=_history,
        default=2,
        metavar="N",
        help="steps of history that make two nodes the same (default: 2)",
    )
    parser.add_argument(
        "--nlu",
        action="store_true",
        help="label user turns with an example utterance instead of the intent",
    )
    parser.add_argument("--no-rules", action="store_true", help="draw the stories only")
    parser.set_defaults(func=cmd_visualize)


def cmd_visualize(args: argparse.Namespace, settings: object = None) -> int:
    """Load the project, draw its graph and write it; 1 with one-line errors on failure."""
    root = Path(args.project)
    if not root.is_dir():
        return _fail(f"the project folder {root} does not exist")
    fmt = _format(args.format, args.out)
    out = Path(args.out) if args.out else Path(f"graph.{fmt}")
    project, problems = read_project(root)
    errors = [p for p in problems if p.level is Level.ERROR]
    if errors:
        for problem in errors:
            print(problem.render(root), file=sys.stderr)
        return _fail(f"the project has {len(errors)} error(s); fix them and run again")
    graph = build_story_graph(
        project, max_history=args.max_history, nlu=args.nlu, include_rules=not args.no_rules
    )
    try:
        data = render(graph, fmt, title=f"{root.resolve().name}: story graph")
    except VisualizeError as exc:
        return _fail(str(exc))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    except OSError as exc:
        return _fail(f"cannot write {out}: {exc.strerror or exc}")
    print(
        f"wrote {out}: {len(graph.nodes)} nodes, {len(graph.edges)} edges "
        f"({graph.count('story')} stories, {graph.count('rule')} rules)"
    )
    return 0


def _format(given: str | None, out: str | None) -> Format:
    for fmt in FORMATS:
        if given == fmt:
            return fmt
    return SUFFIXES.get(Path(out).suffix.lower(), "html") if out else "html"


def _history(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _fail(message: str) -> int:
    print(f"parley visualize: error: {message}", file=sys.stderr)
    return 1
