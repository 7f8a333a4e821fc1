"""`parley train`: train a project's NLU model into `models/<timestamp>.tar.gz`.

Unchanged NLU data (same fingerprint as an archive already in the models folder) is not
retrained: the command names that archive and exits 0. `--force` retrains anyway.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from schemas.project.domain import DEFAULT_INTENTS
from schemas.project.loader import load_project
from schemas.project.problems import ProjectError
from services.common.clock import SystemClock
from services.nlu.archive import find_by_fingerprint, nlu_fingerprint
from services.nlu.parse_data import nlu_rules
from services.nlu.training.settings import TrainSettings, TrainSettingsError


def add_train_command(commands: Any) -> None:
    parser = commands.add_parser(
        "train",
        help="train the project's NLU model into models/<timestamp>.tar.gz",
        description=(
            "Fine-tune the joint intent + entity transformer on the project's NLU data and "
            "write a model archive (ONNX model, tokenizer, label maps, metadata, fingerprint). "
            "Settings come from the ParleyTransformer component in config.yml; the options "
            "below override them. Unchanged NLU data is not retrained."
        ),
    )
    parser.add_argument("--project", default=".", help="the project folder (default: .)")
    parser.add_argument("--out", default=None, help="models folder (default: <project>/models)")
    parser.add_argument("--force", action="store_true", help="retrain even if nothing changed")
    parser.add_argument("--encoder", default=None, help="a local Hugging Face encoder directory")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (one line per epoch)"
    )
    parser.set_defaults(func=run_train)


def _version() -> str:
    try:
        return version("parley")
    except PackageNotFoundError:
        return "unknown"


def run_train(args: argparse.Namespace, settings: object) -> int:
    root = Path(args.project)
    out = Path(args.out) if args.out else root / "models"
    try:
        project = load_project(root)
    except ProjectError as exc:
        print(f"parley train: {exc}", file=sys.stderr)
        return 1
    try:
        train_settings = TrainSettings.from_config(
            project.config, encoder=args.encoder, epochs=args.epochs, seed=args.seed
        )
        encoder_dir = train_settings.encoder_dir(root)
    except TrainSettingsError as exc:
        print(f"parley train: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    fingerprint = nlu_fingerprint(
        project.nlu, project.config, train_settings.as_dict(), encoder_dir
    )
    existing = None if args.force else find_by_fingerprint(out, fingerprint)
    if existing is not None:
        print(
            f"NLU data, pipeline and encoder unchanged since {existing}: not retrained "
            "(--force retrains)"
        )
        return 0
    try:
        from services.nlu.training.train import TrainingError, train_nlu
    except ImportError as exc:
        print(
            f"parley train needs the train extra (torch, transformers): {exc}\n"
            "  pip install 'parley[train]'",
            file=sys.stderr,
        )
        return 2
    print(
        f"training NLU on {len(project.nlu.examples)} examples, "
        f"{len(project.nlu.intents())} intents, encoder {encoder_dir}",
        flush=True,
    )
    try:
        trained = train_nlu(
            project.nlu.examples,
            train_settings,
            encoder_dir,
            progress=False if args.no_progress else None,
        )
    except TrainingError as exc:
        print(f"parley train: {exc}", file=sys.stderr)
        return 1
    path = trained.save(
        out,
        created_at=SystemClock().now(),
        fingerprint=fingerprint,
        rules={
            **nlu_rules(project.nlu, project.config),
            "domain_intents": sorted({*project.domain.intents, *DEFAULT_INTENTS}),
        },
        metadata={"parley_version": _version()},
    )
    size_mb = path.stat().st_size / 1e6
    print(trained.summary.render())
    print(
        f"wrote {path} ({size_mb:.1f} MB) in {time.perf_counter() - started:.1f} s; "
        f"fingerprint {fingerprint[:12]}"
    )
    return 0
