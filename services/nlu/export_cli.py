"""`parley export triton`: write a Triton model repository for a joint NLU ONNX model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from services.nlu.archive import ArchiveError, ModelArchive, resolve_model
from services.nlu.triton_export import FLAVOURS, INSTANCE_KINDS, export_triton_repository


def add_export_command(subparsers: Any) -> None:
    """Register `export triton` on the `parley` command's subparsers."""
    export = subparsers.add_parser("export", help="export a trained model for serving")
    targets = export.add_subparsers(dest="export_target", metavar="TARGET", required=True)
    triton = targets.add_parser(
        "triton",
        help="write a Triton Inference Server model repository (config.pbtxt + model files)",
        description=(
            "Write <out>/<model-name>/config.pbtxt and <out>/<model-name>/<version>/ for a joint "
            "intent + entity ONNX model (inputs input_ids, attention_mask; outputs intent, "
            "entities). The onnxruntime flavour is for a production (NGC) Triton; the python "
            "flavour runs on the local tritonserver, which has only the python backend."
        ),
    )
    triton.add_argument(
        "--model",
        required=True,
        type=Path,
        help="a model archive (models/<ts>.tar.gz), a models folder (its newest archive), "
        "or a joint model's .onnx file",
    )
    triton.add_argument("--out", required=True, type=Path, help="the model repository folder")
    triton.add_argument("--model-name", default="parley_nlu", help="default: parley_nlu")
    triton.add_argument(
        "--flavour", choices=FLAVOURS, default="onnxruntime", help="default: onnxruntime"
    )
    triton.add_argument("--max-batch-size", type=int, default=32, help="default: 32")
    triton.add_argument(
        "--preferred-batch-sizes",
        default="8,16,32",
        help="comma-separated; sizes above --max-batch-size are dropped (default: 8,16,32)",
    )
    triton.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=2000,
        help="dynamic batcher's max queue delay in microseconds (default: 2000)",
    )
    triton.add_argument(
        "--instance-kind", choices=INSTANCE_KINDS, default="KIND_CPU", help="default: KIND_CPU"
    )
    triton.add_argument("--instance-count", type=int, default=1, help="default: 1")
    triton.add_argument("--threads", type=int, default=1, help="intra-op threads (default: 1)")
    triton.add_argument(
        "--precision",
        choices=("auto", "int8", "fp32"),
        default="auto",
        help="which model of an archive: int8 (CPU serving) or fp32; auto: int8 for "
        "KIND_CPU when the archive has it, fp32 for KIND_GPU (default: auto)",
    )
    triton.add_argument("--version", type=int, default=1, help="model version folder (default 1)")
    triton.set_defaults(func=run_export_triton)


def run_export_triton(args: argparse.Namespace, settings: object) -> int:
    """Run `parley export triton`; exit 2 on an invalid model or option."""
    model_path: Path = args.model
    if model_path.suffix == ".onnx" and model_path.is_file():
        onnx = model_path.read_bytes()
    else:
        try:
            nlu = ModelArchive.read(resolve_model(model_path)).nlu
            precision = args.precision
            if precision == "auto":
                precision = "int8" if args.instance_kind == "KIND_CPU" else "fp32"
            onnx = nlu.model_bytes(precision)
        except ArchiveError as exc:
            print(f"--model: {exc}", file=sys.stderr)
            return 2
    max_batch_size: int = args.max_batch_size
    try:
        preferred = [int(s) for s in str(args.preferred_batch_sizes).split(",") if s.strip()]
        preferred = [s for s in preferred if s <= max_batch_size] if max_batch_size else []
        model_dir = export_triton_repository(
            onnx,
            args.out,
            model_name=args.model_name,
            flavour=args.flavour,
            max_batch_size=max_batch_size,
            preferred_batch_sizes=preferred,
            max_queue_delay_microseconds=args.max_queue_delay_us,
            instance_kind=args.instance_kind,
            instance_count=args.instance_count,
            version=args.version,
            intra_op_threads=args.threads,
        )
    except ValueError as exc:
        print(f"parley export triton: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {model_dir} ({args.flavour} flavour, version {args.version})")
    return 0
