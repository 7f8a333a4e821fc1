"""`parley validate`: a project's problems with `file:line` and hints; exit 1 on errors."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from schemas.project.loader import read_project
from schemas.project.problems import Level
from schemas.project.validation import validate


def add_validate_command(commands: Any) -> None:
    parser = commands.add_parser(
        "validate",
        help="check a Rasa 3.x bot project: every problem with file:line and a hint",
    )
    parser.add_argument("--project", default=".", help="the project folder (default: .)")
    parser.add_argument(
        "--fail-on-warnings", action="store_true", help="exit 1 on warnings too, not only errors"
    )
    parser.add_argument(
        "--max-history",
        type=int,
        default=None,
        help="turns of history compared for story conflicts (default: from config.yml, else 5)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")
    parser.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace, settings: object) -> int:
    root = Path(args.project)
    started = time.perf_counter()
    project, problems = read_project(root)
    if root.is_dir():
        problems += validate(project, max_history=args.max_history)
    elapsed = time.perf_counter() - started
    problems.sort(key=lambda p: (str(p.source.file), p.source.line or 0, p.level.value))
    if not args.quiet:
        for problem in problems:
            print(
                problem.render(root),
                file=sys.stderr if problem.level is Level.ERROR else sys.stdout,
            )
    errors = sum(p.level is Level.ERROR for p in problems)
    warnings = len(problems) - errors
    print(
        f"{root}: {errors} error(s), {warnings} warning(s) — {len(project.files)} files, "
        f"{len(project.nlu.examples)} examples, {len(project.stories)} stories, "
        f"{len(project.rules)} rules, {len(project.test_stories)} test stories "
        f"({elapsed * 1000:.0f} ms)"
    )
    if errors or (warnings and args.fail_on_warnings):
        return 1
    return 0
