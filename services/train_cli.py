"""`parley train`: train a project's NLU model and dialogue policies into
`models/<timestamp>.tar.gz`.

Each part has its fingerprint: the NLU one (NLU data, pipeline, settings, encoder) and the core
one (stories, rules, domain, policies). A part whose fingerprint matches an archive already in
the models folder is not retrained: its files are copied from that archive into the new one.
When both match one archive nothing is written: the command names that archive and exits 0.
`--force` retrains both anyway.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from schemas.project.domain import DEFAULT_INTENTS
from schemas.project.loader import Project, load_project
from schemas.project.problems import ProjectError
from services.common.clock import SystemClock
from services.common.model_archive import ArchiveError, read_members, read_metadata
from services.dialogue.model import ENSEMBLE_MEMBER, core_fingerprint, train_core
from services.nlu.archive import ModelArchive, find_by_fingerprint, nlu_fingerprint, write_archive
from services.nlu.parse_data import nlu_rules
from services.nlu.training.settings import TrainSettings, TrainSettingsError


def add_train_command(commands: Any) -> None:
    parser = commands.add_parser(
        "train",
        help="train the project's NLU model and policies into models/<timestamp>.tar.gz",
        description=(
            "Fine-tune the joint intent + entity transformer on the project's NLU data, train "
            "the dialogue policies on its stories and rules, and write a model archive (ONNX "
            "model, tokenizer, label maps, policy ensemble, metadata, fingerprints). Settings "
            "come from the ParleyTransformer component in config.yml; the options below "
            "override them. A part whose data is unchanged is not retrained."
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
    core_print = core_fingerprint(project)
    existing = None if args.force else find_by_fingerprint(out, fingerprint, core=core_print)
    if existing is not None:
        print(
            f"NLU data, pipeline, encoder, stories, rules, domain and policies unchanged since "
            f"{existing}: not retrained (--force retrains)"
        )
        return 0
    core_source = None if args.force else find_by_fingerprint(out, core_print, "core")
    core = _core_part(project, core_print, core_source)
    rules = {
        **nlu_rules(project.nlu, project.config),
        "domain_intents": sorted({*project.domain.intents, *DEFAULT_INTENTS}),
    }
    metadata: dict[str, Any] = {"parley_version": _version()}
    core_ensemble: dict[str, Any] | None = None
    if core is not None:
        core_ensemble, metadata["core"] = core
    nlu_source = None if args.force else find_by_fingerprint(out, fingerprint)
    if nlu_source is not None:
        try:
            path = _reuse_nlu(nlu_source, out, rules, metadata, core_ensemble)
        except ArchiveError as exc:
            print(f"parley train: {exc}", file=sys.stderr)
            return 1
        print(f"NLU data, pipeline and encoder unchanged since {nlu_source}: NLU not retrained")
    else:
        trained_path = _train_nlu(
            args,
            project,
            train_settings,
            encoder_dir,
            out,
            fingerprint,
            rules,
            metadata,
            core_ensemble,
        )
        if isinstance(trained_path, int):
            return trained_path
        path = trained_path
    size_mb = path.stat().st_size / 1e6
    print(
        f"wrote {path} ({size_mb:.1f} MB) in {time.perf_counter() - started:.1f} s; "
        f"fingerprint {fingerprint[:12]}, core {core_print[:12]}"
    )
    return 0


def _core_part(
    project: Project, fingerprint: str, source: Path | None
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(ensemble JSON, core metadata): copied from `source` when it has them, else trained;
    None when no configured policy can be trained (the archive then has no dialogue part)."""
    if source is not None:
        try:
            member = read_members(source, (ENSEMBLE_MEMBER,)).get(ENSEMBLE_MEMBER)
            meta = read_metadata(source).get("core")
            if member is not None and isinstance(meta, dict):
                print(
                    f"stories, rules, domain and policies unchanged since {source}: "
                    "policies not retrained"
                )
                return json.loads(member), meta
        except (ArchiveError, ValueError):
            pass
    try:
        trained = train_core(project, fingerprint)
    except ValueError as exc:
        print(f"parley train: dialogue policies not trained: {exc}", file=sys.stderr)
        return None
    names = ", ".join(p.name for p in trained.ensemble.policies)
    print(f"trained the policies ({names}) on {trained.trackers} trackers", flush=True)
    return trained.ensemble.to_json(), trained.metadata


def _reuse_nlu(
    source: Path,
    out: Path,
    rules: dict[str, Any],
    metadata: dict[str, Any],
    core_ensemble: dict[str, Any] | None,
) -> Path:
    """A new archive with the NLU files of `source` and the given dialogue part."""
    previous = ModelArchive.read(source)
    nlu = previous.nlu
    return write_archive(
        out,
        created_at=SystemClock().now(),
        metadata={**metadata, "nlu": previous.metadata["nlu"]},
        onnx=nlu.onnx,
        onnx_int8=nlu.onnx_int8,
        tokenizer_json=nlu.tokenizer_json,
        labels={"intents": nlu.intents, "entity_labels": nlu.entity_labels},
        rules=rules,
        core_ensemble=core_ensemble,
    )


def _train_nlu(
    args: argparse.Namespace,
    project: Project,
    train_settings: TrainSettings,
    encoder_dir: Path,
    out: Path,
    fingerprint: str,
    rules: dict[str, Any],
    metadata: dict[str, Any],
    core_ensemble: dict[str, Any] | None,
) -> Path | int:
    """Train the NLU model and write the archive: its path, or an exit status."""
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
        rules=rules,
        metadata=metadata,
        core_ensemble=core_ensemble,
    )
    print(trained.summary.render())
    return path
