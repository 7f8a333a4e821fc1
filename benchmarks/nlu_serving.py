"""NLU serving benchmark: one trained model, three ways, side by side in the same run.

    python -m benchmarks.nlu_serving --model results/nlu-snips/models [--requests 512]
        [--concurrency 64] [--repeats 3] [--out results/bench-nlu-serving.json]

(a) batch-1: one request at a time to Triton (gRPC asyncio), each awaited before the next;
(b) dynamic batching: `--concurrency` requests in flight to the same Triton model, which
    its dynamic batcher groups (batch sizes read back from Triton's statistics);
(c) in-process onnxruntime, same ONNX model and thread count, at the batch sizes Triton formed.

Inputs are real utterances (SNIPS test texts, tokenized with the archive's tokenizer), one per
request, unpadded. Triton is the local tritonserver started by `make services-up` (python
backend running onnxruntime; the model is exported into `$TRITON_MODEL_REPOSITORY` under a
benchmark name, loaded, and unloaded afterwards). The three measures alternate in each repeat
so the machine's drift hits all of them; medians over repeats are reported, with the ratios
(b)/(a) and (b)/(c).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from schemas.project.loader import read_nlu_file
from services.nlu.archive import ModelArchive, resolve_model
from services.nlu.inference import OnnxRuntimeModel, TokenIds, TritonModel
from services.nlu.tokenizer import WordPieceTokenizer
from services.nlu.triton_export import export_triton_repository

REPO = Path(__file__).resolve().parents[1]
SNIPS_TEST = REPO.parent / "shared" / "data" / "nlu" / "snips" / "yaml" / "test.yml"
MODEL_NAME = "bench_nlu"


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _summary(latencies: list[float], wall: float, count: int) -> dict[str, float]:
    return {
        "utterances_per_s": count / wall,
        "p50_ms": _percentile(latencies, 50) * 1000,
        "p99_ms": _percentile(latencies, 99) * 1000,
    }


async def batch_one(
    model: TritonModel, inputs: list[tuple[TokenIds, TokenIds]]
) -> dict[str, float]:
    latencies = []
    started = time.perf_counter()
    for ids, mask in inputs:
        t0 = time.perf_counter()
        await model.infer(ids, mask)
        latencies.append(time.perf_counter() - t0)
    return _summary(latencies, time.perf_counter() - started, len(inputs))


async def concurrent(
    model: TritonModel, inputs: list[tuple[TokenIds, TokenIds]], in_flight: int
) -> dict[str, float]:
    latencies: list[float] = []
    gate = asyncio.Semaphore(in_flight)

    async def one(ids: TokenIds, mask: TokenIds) -> None:
        async with gate:
            t0 = time.perf_counter()
            await model.infer(ids, mask)
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(one(ids, mask) for ids, mask in inputs))
    return _summary(latencies, time.perf_counter() - started, len(inputs))


def in_process(
    model: OnnxRuntimeModel,
    tokenizer: WordPieceTokenizer,
    encoded: list[Any],
    sizes: list[int],
) -> dict[str, float]:
    """Batches of the given sizes (cycled) over the inputs, padded like the python model pads."""
    latencies = []
    done = 0
    index = 0
    started = time.perf_counter()
    while done < len(encoded):
        size = min(sizes[index % len(sizes)], len(encoded) - done)
        ids, mask = tokenizer.pad(encoded[done : done + size])
        t0 = time.perf_counter()
        model.infer_sync(ids, mask)
        latencies += [time.perf_counter() - t0] * size
        done += size
        index += 1
    return _summary(latencies, time.perf_counter() - started, len(encoded))


async def batch_sizes(client: Any) -> Counter[int]:
    stats = await client.get_inference_statistics(MODEL_NAME)
    (model_stats,) = stats.model_stats
    return Counter({int(b.batch_size): int(b.compute_infer.count) for b in model_stats.batch_stats})


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from tritonclient.grpc.aio import InferenceServerClient

    archive = ModelArchive.read(resolve_model(args.model))
    tokenizer = WordPieceTokenizer(
        archive.nlu.tokenizer_json, archive.nlu.max_length, archive.nlu.pad_id
    )
    data, _ = read_nlu_file(args.utterances)
    texts = [e.text for e in data.examples][: args.requests]
    while len(texts) < args.requests:
        texts += texts[: args.requests - len(texts)]
    encoded = tokenizer.encode(texts)
    inputs = [tokenizer.pad([e]) for e in encoded]
    repository = Path(args.repository)
    export_triton_repository(
        archive.nlu.model_bytes(args.precision),
        repository,
        model_name=MODEL_NAME,
        flavour="python",
        max_batch_size=args.max_batch,
        preferred_batch_sizes=[s for s in (8, 16, 32, 64) if s <= args.max_batch],
        max_queue_delay_microseconds=args.queue_delay_us,
        intra_op_threads=args.threads,
    )
    client = InferenceServerClient(url=args.triton)
    reference = OnnxRuntimeModel(archive.nlu.model_bytes(args.precision), threads=args.threads)
    rounds: dict[str, list[dict[str, float]]] = {"a": [], "b": [], "c": []}
    formed: Counter[int] = Counter()
    try:
        await client.load_model(MODEL_NAME)
        async with TritonModel(args.triton, MODEL_NAME, timeout_s=60.0) as triton:
            await batch_one(triton, inputs[:32])  # warm-up
            await concurrent(triton, inputs[:128], args.concurrency)
            for repeat in range(1, args.repeats + 1):
                rounds["a"].append(await batch_one(triton, inputs))
                before = await batch_sizes(client)
                rounds["b"].append(await concurrent(triton, inputs, args.concurrency))
                this_round = await batch_sizes(client) - before
                formed += this_round
                sizes = sorted(this_round.elements())
                rounds["c"].append(in_process(reference, tokenizer, encoded, sizes or [1]))
                print(
                    f"repeat {repeat}: "
                    + ", ".join(
                        f"({k}) {v[-1]['utterances_per_s']:.0f} utt/s" for k, v in rounds.items()
                    ),
                    file=sys.stderr,
                )
    finally:
        try:
            await client.unload_model(MODEL_NAME)
        finally:
            await client.close()
            shutil.rmtree(repository / MODEL_NAME, ignore_errors=True)

    def median(key: str) -> dict[str, float]:
        return {
            metric: round(statistics.median(r[metric] for r in rounds[key]), 2)
            for metric in rounds[key][0]
        }

    a, b, c = median("a"), median("b"), median("c")
    total = sum(formed.values())
    return {
        "model": str(archive.path),
        "encoder": archive.metadata["nlu"].get("encoder", {}).get("path"),
        "requests": len(inputs),
        "mean_tokens": round(float(np.mean([len(e.ids) for e in encoded])), 1),
        "concurrency": args.concurrency,
        "max_batch": args.max_batch,
        "queue_delay_us": args.queue_delay_us,
        "threads": args.threads,
        "precision": args.precision
        if archive.nlu.onnx_int8 or args.precision == "fp32"
        else "fp32",
        "repeats": args.repeats,
        "a_batch1_sequential": a,
        "b_dynamic_batching": b,
        "c_in_process_same_batches": c,
        "mean_batch_formed": round(sum(k * v for k, v in formed.items()) / max(1, total), 1),
        "batches_formed": {str(k): v for k, v in sorted(formed.items())},
        "ratio_b_over_a": round(b["utterances_per_s"] / a["utterances_per_s"], 2),
        "ratio_b_over_c": round(b["utterances_per_s"] / c["utterances_per_s"], 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="archive or models folder")
    parser.add_argument("--utterances", type=Path, default=SNIPS_TEST)
    parser.add_argument("--triton", default=os.environ.get("TRITON_GRPC_URL", "127.0.0.1:18001"))
    parser.add_argument(
        "--repository",
        default=os.environ.get(
            "TRITON_MODEL_REPOSITORY", str(REPO / ".parley/services/triton/models")
        ),
    )
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--queue-delay-us", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    parser.add_argument("--out", type=Path, default=Path("results/bench-nlu-serving.json"))
    args = parser.parse_args(argv)
    if not args.utterances.is_file():
        sys.exit(f"{args.utterances} is missing: this benchmark reads ../shared/data/nlu")
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
