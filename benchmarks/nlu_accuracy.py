"""NLU accuracy benchmark: train Parley's joint model on SNIPS or HWU64, score the test split.

    python -m benchmarks.nlu_accuracy --dataset snips [--epochs 10] [--out results/nlu-snips]
    python -m benchmarks.nlu_accuracy --dataset hwu64 --fold 1 [--out results/nlu-hwu64]

Data: `../shared/data/nlu` (Rasa YAML). SNIPS trains on `train.yml`, stops early on `val.yml`
and is scored on `test.yml`; HWU64 trains on fold N's `train.yml` (10% held out, stratified,
for early stopping) and is scored on its `test.yml`, as DIET was. The default encoder
(MiniLM-L6) is used unless `--encoder` says otherwise. Scoring goes through the same code as
`parley test nlu` (the full parse: model, regexes, synonyms, fallback as configured: none here)
and writes its reports and pictures into `--out`, with `benchmark.json` holding the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from schemas.project.config import Component, Config
from schemas.project.loader import read_nlu_file
from schemas.project.nlu import NluData
from schemas.project.problems import Source
from services.nlu.archive import ModelArchive, nlu_fingerprint
from services.nlu.parse_data import nlu_rules
from services.nlu.training.settings import TrainSettings

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "nlu"
# The model alone, as the DIET figures are: no FallbackClassifier (Rasa's default pipeline
# would turn low-confidence predictions into nlu_fallback), no regexes or synonyms.
BENCHMARK_CONFIG = Config(pipeline=(Component("ParleyTransformer", Source(Path("benchmark"))),))


def _read(path: Path) -> NluData:
    if not path.is_file():
        sys.exit(f"{path} is missing: this benchmark needs ../shared/data/nlu")
    data, problems = read_nlu_file(path)
    errors = [p for p in problems if p.level.value == "error"]
    if errors:
        sys.exit(f"{path}: {errors[0].render()}")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=("snips", "hwu64"), required=True)
    parser.add_argument("--fold", type=int, default=1, help="HWU64 fold (1-10)")
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--encoder", default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=None, help="score this archive, no training")
    parser.add_argument(
        "--quantize",
        action="store_true",
        help="with --model: also score an int8 quantization of an archive that has none",
    )
    args = parser.parse_args(argv)
    if args.dataset == "snips":
        base = args.data / "snips" / "yaml"
        train, held, test = base / "train.yml", base / "val.yml", base / "test.yml"
        name = "snips"
    else:
        base = args.data / "hwu64" / "yaml" / f"KFold_{args.fold}"
        train, held, test = base / "train.yml", None, base / "test.yml"
        name = f"hwu64-fold{args.fold}"
    out: Path = args.out or Path("results") / f"nlu-{name}"
    out.mkdir(parents=True, exist_ok=True)
    train_data = _read(train)
    train_s = None
    if args.model is None:
        from services.nlu.training.train import train_nlu

        settings = TrainSettings.from_config(None, epochs=args.epochs, encoder=args.encoder)
        encoder_dir = settings.encoder_dir()
        started = time.perf_counter()
        trained = train_nlu(
            train_data.examples,
            settings,
            encoder_dir,
            held_out=_read(held).examples if held else None,
        )
        train_s = time.perf_counter() - started
        print(trained.summary.render())
        model_path = trained.save(
            out / "models",
            created_at=datetime.now(UTC),
            fingerprint=nlu_fingerprint(
                train_data, BENCHMARK_CONFIG, settings.as_dict(), encoder_dir
            ),
            rules=nlu_rules(train_data, BENCHMARK_CONFIG),
        )
    else:
        model_path = args.model
    from services.nlu.evaluate_cli import evaluate_archive

    archive = ModelArchive.read(model_path)
    if args.model is not None:  # score the model alone, whatever rules the archive holds
        rules = nlu_rules(train_data, BENCHMARK_CONFIG)
        archive = dataclasses.replace(archive, nlu=dataclasses.replace(archive.nlu, rules=rules))
    test_data = _read(test)
    report = evaluate_archive(archive, test_data, out=out / "fp32", precision="fp32")
    int8 = None
    if archive.nlu.onnx_int8 is None and args.quantize:
        from services.nlu.quantize import quantize_int8

        archive = dataclasses.replace(
            archive, nlu=dataclasses.replace(archive.nlu, onnx_int8=quantize_int8(archive.nlu.onnx))
        )
    if archive.nlu.onnx_int8 is not None:
        int8 = evaluate_archive(archive, test_data, out=out / "int8", precision="int8")
    summary = archive.metadata["nlu"].get("summary", {})
    result = {
        "dataset": name,
        "model": str(model_path),
        "train_examples": len(train_data.examples),
        "test_examples": report.examples,
        "intent_accuracy": report.intent_accuracy,
        "intent_macro_f1": report.intent_macro_f1,
        "entity_micro_f1": report.entity_micro_f1,
        "int8": None
        if int8 is None
        else {
            "intent_accuracy": int8.intent_accuracy,
            "intent_macro_f1": int8.intent_macro_f1,
            "entity_micro_f1": int8.entity_micro_f1,
        },
        "training_wall_s": round(train_s, 1) if train_s is not None else summary.get("wall_s"),
        "epochs_run": summary.get("epochs_run"),
        "best_epoch": summary.get("best_epoch"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "date": datetime.now(UTC).date().isoformat(),
    }
    (out / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
