"""Model loaders for the NLU worker: in-process onnxruntime, or a Triton Inference Server.

`TritonLoader` with a model repository folder it can write (shared with Triton, which runs
with `--model-control-mode=explicit`) deploys each new archive as the next version of the
model and asks Triton to load it; the worker then queries exactly that version, so the
label maps always match the served model. Without a repository it serves whatever Triton
has loaded, after checking that the served model's outputs match the archive's labels.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from services.common.errors import RetryableError
from services.nlu.archive import ArchiveError, ModelArchive, Precision
from services.nlu.inference import TritonModel
from services.nlu.interpreter import NluInterpreter
from services.nlu.parse_data import ParseOptions
from services.nlu.triton_export import Flavour, export_triton_repository

logger = logging.getLogger(__name__)


def _options(archive: ModelArchive) -> ParseOptions:
    return ParseOptions.from_rules(archive.nlu.rules)


class InProcessLoader:
    """onnxruntime in this process (the embedded default), concurrent messages micro-batched."""

    def __init__(
        self, threads: int = 1, max_batch: int = 32, precision: Precision = "int8"
    ) -> None:
        self.threads = threads
        self.max_batch = max_batch
        self.precision = precision

    async def load(self, archive: ModelArchive) -> NluInterpreter:
        return await asyncio.to_thread(
            NluInterpreter.in_process,
            archive.nlu,
            _options(archive),
            threads=self.threads,
            name=archive.name,
            known_intents=archive.nlu.domain_intents,
            max_batch=self.max_batch,
            precision=self.precision,
        )

    async def ready(self, interpreter: NluInterpreter) -> tuple[bool, str]:
        return True, "onnxruntime in process"


class TritonLoader:
    """Serves through Triton over gRPC; deploys new versions when given the repository."""

    def __init__(
        self,
        grpc_url: str,
        model_name: str = "parley_nlu",
        *,
        repository: Path | None = None,
        flavour: Flavour = "python",
        timeout_s: float = 5.0,
        load_timeout_s: float = 120.0,
        precision: Precision = "int8",
    ) -> None:
        self.precision = precision
        self.grpc_url = grpc_url
        self.model_name = model_name
        self.repository = repository
        self.flavour = flavour
        self.timeout_s = timeout_s
        self.load_timeout_s = load_timeout_s

    def _next_version(self) -> int:
        assert self.repository is not None
        folder = self.repository / self.model_name
        versions = [int(p.name) for p in folder.glob("*") if p.is_dir() and p.name.isdigit()]
        return max(versions, default=0) + 1

    async def load(self, archive: ModelArchive) -> NluInterpreter:
        version = ""
        model = TritonModel(self.grpc_url, self.model_name, self.timeout_s)
        client: Any = model._connect()
        from tritonclient.utils import InferenceServerException

        try:
            if self.repository is not None:
                number = self._next_version()
                await asyncio.to_thread(
                    export_triton_repository,
                    archive.nlu.model_bytes(self.precision),
                    self.repository,
                    model_name=self.model_name,
                    flavour=self.flavour,
                    version=number,
                )
                version = str(number)
                logger.info(
                    "deploying %s to Triton as %s v%s", archive.name, self.model_name, version
                )
                await asyncio.wait_for(client.load_model(self.model_name), self.load_timeout_s)
            ready = await client.is_model_ready(self.model_name, version)
            if not ready:
                raise RetryableError(f"Triton has no ready model {self.model_name!r} {version}")
            metadata = await client.get_model_metadata(self.model_name, version, as_json=True)
        except InferenceServerException as exc:
            await model.close()
            raise RetryableError(f"Triton at {self.grpc_url}: {exc.message()}") from exc
        except TimeoutError as exc:
            await model.close()
            raise RetryableError(f"Triton at {self.grpc_url}: model load timed out") from exc
        _check_outputs(metadata, archive)
        await model.close()
        served = TritonModel(self.grpc_url, self.model_name, self.timeout_s, model_version=version)
        return NluInterpreter(
            archive.nlu,
            served,
            _options(archive),
            model_name=archive.name,
            known_intents=archive.nlu.domain_intents,
        )

    async def ready(self, interpreter: NluInterpreter) -> tuple[bool, str]:
        model = interpreter.model
        if not isinstance(model, TritonModel):
            return False, "not a Triton model"
        if await model.ready():
            version = model.model_version or "latest"
            return True, f"Triton {self.grpc_url} {self.model_name} v{version} ready"
        return False, f"Triton {self.grpc_url}: model {self.model_name} not ready or unreachable"


def _check_outputs(metadata: dict[str, Any], archive: ModelArchive) -> None:
    shapes = {o["name"]: [int(d) for d in o.get("shape", [])] for o in metadata.get("outputs", [])}
    intents = shapes.get("intent", [])
    labels = shapes.get("entities", [])
    if not intents or not labels:
        raise ArchiveError(f"the served model has no intent/entities outputs: {metadata}")
    if intents[-1] != len(archive.nlu.intents) or labels[-1] != len(archive.nlu.entity_labels):
        raise ArchiveError(
            f"the model Triton serves ({intents[-1]} intents, {labels[-1]} entity labels) is "
            f"not {archive.name} ({len(archive.nlu.intents)} intents, "
            f"{len(archive.nlu.entity_labels)} labels): export this archive to Triton "
            "(`parley export triton`) or give the worker the model repository"
        )
