"""`parley test nlu`: score a model archive on a project's NLU data (or any NLU file).

Writes `intent_report.json`, `entity_report.json`, `errors.json`, `summary.txt`,
`intent_confusion_matrix.png` and `intent_histogram.png` into `--out` (default
`results/`), and prints the summary. The parse is the full one the worker runs (model,
regexes, synonyms, fallback), in process with onnxruntime.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from schemas.project.loader import load_project, read_nlu_file
from schemas.project.nlu import Example, NluData
from schemas.project.problems import Level, ProjectError
from services.nlu.archive import ArchiveError, ModelArchive, Precision, resolve_model
from services.nlu.evaluation import EvaluationReport, evaluate, render_summary, write_reports
from services.nlu.interpreter import NluInterpreter, ParseRequest
from services.nlu.parse_data import ParseOptions

BATCH = 64


def parse_all(
    archive: ModelArchive,
    examples: Sequence[Example],
    *,
    progress: bool = False,
    precision: Precision = "int8",
) -> list[dict[str, Any]]:
    """The worker's parse of every example's text, in batches (in-process onnxruntime)."""
    interpreter = NluInterpreter.in_process(
        archive.nlu,
        ParseOptions.from_rules(archive.nlu.rules),
        threads=os.cpu_count() or 1,
        known_intents=archive.nlu.domain_intents,
        precision=precision,
    )
    bar: Any = None
    if progress:
        from tqdm import tqdm  # type: ignore[import-untyped]

        bar = tqdm(total=len(examples), desc="parsing", unit="ex", file=sys.stderr, leave=False)

    async def run() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for start in range(0, len(examples), BATCH):
            chunk = examples[start : start + BATCH]
            out += await interpreter.parse([ParseRequest(e.text) for e in chunk])
            if bar is not None:
                bar.update(len(chunk))
        return out

    try:
        return asyncio.run(run())
    finally:
        if bar is not None:
            bar.close()


def evaluate_archive(
    archive: ModelArchive,
    data: NluData,
    out: Path | None = None,
    *,
    progress: bool = False,
    precision: Precision = "int8",
) -> EvaluationReport:
    """Score `archive` on `data`; write the reports and pictures into `out` when given."""
    examples = [e for e in data.examples if e.text.strip()]
    parses = parse_all(archive, examples, progress=progress, precision=precision)
    report = evaluate(examples, parses)
    if out is not None:
        write_reports(report, out)
    return report


def add_test_command(commands: Any) -> Any:
    """Register `parley test nlu`; returns the `test` command's subparsers (for more targets)."""
    parser = commands.add_parser("test", help="score a trained model")
    targets = parser.add_subparsers(dest="test_target", metavar="TARGET", required=True)
    nlu = targets.add_parser(
        "nlu",
        help="intent and entity reports, errors, confusion matrix and confidence histogram",
        description=__doc__.split("\n\n")[0],
    )
    nlu.add_argument("--project", default=".", help="the project folder (default: .)")
    nlu.add_argument(
        "--model", default=None, help="archive, or models folder (default: <project>/models)"
    )
    nlu.add_argument(
        "--nlu",
        type=Path,
        default=None,
        help="score on this NLU file (a test split) instead of the project's NLU data",
    )
    nlu.add_argument("--out", type=Path, default=Path("results"), help="default: results/")
    nlu.add_argument(
        "--precision",
        choices=("int8", "fp32"),
        default="int8",
        help="score the archive's int8 model (what CPU serving uses) or its fp32 one",
    )
    nlu.set_defaults(func=run_test_nlu)
    return targets


def run_test_nlu(args: argparse.Namespace, settings: object) -> int:
    root = Path(args.project)
    try:
        archive = ModelArchive.read(resolve_model(args.model or root / "models"))
    except ArchiveError as exc:
        print(f"parley test nlu: {exc}", file=sys.stderr)
        return 2
    if args.nlu is not None:
        data, problems = read_nlu_file(args.nlu)
        errors = [p for p in problems if p.level is Level.ERROR]
        if errors:
            print(f"parley test nlu: {ProjectError(errors)}", file=sys.stderr)
            return 1
    else:
        try:
            data = load_project(root).nlu
        except ProjectError as exc:
            print(f"parley test nlu: {exc}", file=sys.stderr)
            return 1
    started = time.perf_counter()
    report = evaluate_archive(
        archive, data, args.out, progress=sys.stderr.isatty(), precision=args.precision
    )
    print(
        f"model {archive.path}, {report.examples} examples ({time.perf_counter() - started:.1f} s)"
    )
    print(render_summary(report))
    print(f"reports and pictures in {args.out}/")
    return 0
