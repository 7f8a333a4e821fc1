"""Parley's model archive, `models/<timestamp>.tar.gz`, and the fingerprint of the NLU data.

Members (a tar.gz anyone can open):

- `metadata.json`: `format`, `created_at`, `parley_version`, and an `nlu` section: the
  `fingerprint` of what was trained on, the encoder, `max_length`, `pad_id`, the training
  settings and the training summary;
- `nlu/model.onnx` (the joint model, Parley's joint signature, fp32) and
  `nlu/model.int8.onnx` (the same, int8-quantized for CPU serving; optional),
  `nlu/tokenizer.json` (the encoder's tokenizer, for the `tokenizers` library),
  `nlu/labels.json` (intents and entity BIO labels in output order), `nlu/rules.json` (what
  the parse needs besides the model: the pipeline, regexes, lookup tables, synonyms, the
  domain's intents; see `parse_data.nlu_rules`);
- `core/ensemble.json` (the trained policy ensemble, `PolicyEnsemble.to_json()`), with a
  `core` section in `metadata.json`: its `fingerprint` (stories, rules, domain, policies), the
  number of training trackers and the policies. Optional: NLU-only archives still load.

Reading an archive needs no torch: serving uses onnxruntime or Triton, and `tokenizers`.
Finding archives (`archives`, `latest_archive`, `resolve_model`, `find_by_fingerprint`) lives
in `services/common/model_archive.py`, shared with the dialogue service.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from schemas.project.config import Config
from schemas.project.nlu import NluData
from services.common.model_archive import ArchiveError as ArchiveError
from services.common.model_archive import archives as archives
from services.common.model_archive import find_by_fingerprint as find_by_fingerprint
from services.common.model_archive import latest_archive as latest_archive
from services.common.model_archive import resolve_model as resolve_model

FORMAT = "parley-model/1"
Precision = Literal["int8", "fp32"]
INT8_MEMBER = "nlu/model.int8.onnx"
ENSEMBLE_MEMBER = "core/ensemble.json"
FINGERPRINT_VERSION = 1
_MEMBERS = (
    "metadata.json",
    "nlu/model.onnx",
    "nlu/tokenizer.json",
    "nlu/labels.json",
    "nlu/rules.json",
)


@dataclass(frozen=True)
class NluModel:
    """The NLU part of an archive, in memory."""

    onnx: bytes
    tokenizer_json: str
    intents: tuple[str, ...]
    entity_labels: tuple[str, ...]
    max_length: int
    pad_id: int
    fingerprint: str
    rules: dict[str, Any]
    onnx_int8: bytes | None = None

    def model_bytes(self, precision: Precision = "int8") -> bytes:
        """The ONNX model of that precision (int8 falls back to fp32 when the archive has no
        int8 variant)."""
        if precision == "int8" and self.onnx_int8 is not None:
            return self.onnx_int8
        return self.onnx

    @property
    def domain_intents(self) -> list[str] | None:
        """The domain's intents (for `/intent` messages), when the archive knows them."""
        intents = self.rules.get("domain_intents")
        return list(intents) if isinstance(intents, list) else None


@dataclass(frozen=True)
class CoreModel:
    """The dialogue part of an archive: the trained ensemble's JSON and its metadata."""

    ensemble: dict[str, Any]
    metadata: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return str(self.metadata.get("fingerprint", ""))


@dataclass(frozen=True)
class ModelArchive:
    """A model archive read into memory."""

    path: Path
    metadata: dict[str, Any]
    nlu: NluModel
    core: CoreModel | None = None

    @classmethod
    def read(cls, path: str | Path) -> ModelArchive:
        """Read and check an archive; ArchiveError says what is wrong."""
        path = Path(path)
        try:
            with tarfile.open(path, "r:gz") as tar:
                members = {m.name: m for m in tar.getmembers() if m.isfile()}
                missing = [name for name in _MEMBERS if name not in members]
                if missing:
                    raise ArchiveError(f"{path}: not a Parley model archive (lacks {missing})")
                data = {}
                for name in (*_MEMBERS, INT8_MEMBER, ENSEMBLE_MEMBER):
                    if name not in members:
                        continue
                    handle = tar.extractfile(members[name])
                    assert handle is not None
                    data[name] = handle.read()
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise ArchiveError(f"{path}: cannot read the model archive: {exc}") from exc
        try:
            metadata = json.loads(data["metadata.json"])
            labels = json.loads(data["nlu/labels.json"])
            nlu_meta = metadata["nlu"]
            if metadata.get("format") != FORMAT:
                raise ArchiveError(
                    f"{path}: archive format {metadata.get('format')!r}, this Parley reads "
                    f"{FORMAT!r}; retrain with `parley train`"
                )
            nlu = NluModel(
                onnx=data["nlu/model.onnx"],
                tokenizer_json=data["nlu/tokenizer.json"].decode(),
                intents=tuple(labels["intents"]),
                entity_labels=tuple(labels["entity_labels"]),
                max_length=int(nlu_meta["max_length"]),
                pad_id=int(nlu_meta["pad_id"]),
                fingerprint=str(nlu_meta["fingerprint"]),
                rules=dict(json.loads(data["nlu/rules.json"])),
                onnx_int8=data.get(INT8_MEMBER),
            )
            core = None
            if ENSEMBLE_MEMBER in data:
                ensemble = json.loads(data[ENSEMBLE_MEMBER])
                core_meta = metadata.get("core") or {}
                if not isinstance(ensemble, dict) or not isinstance(core_meta, dict):
                    raise ArchiveError(f"{path}: malformed {ENSEMBLE_MEMBER} or core metadata")
                core = CoreModel(ensemble, core_meta)
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
            if isinstance(exc, ArchiveError):
                raise
            raise ArchiveError(f"{path}: malformed archive metadata: {exc!r}") from exc
        return cls(path, metadata, nlu, core)

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".tar.gz")


def write_archive(
    models_dir: str | Path,
    *,
    created_at: datetime,
    metadata: Mapping[str, Any],
    onnx: bytes,
    tokenizer_json: str,
    labels: Mapping[str, Iterable[str]],
    rules: Mapping[str, Any],
    onnx_int8: bytes | None = None,
    core_ensemble: Mapping[str, Any] | None = None,
) -> Path:
    """Write `<models_dir>/<YYYYmmdd-HHMMSS>.tar.gz` atomically and return its path.

    `core_ensemble` (the trained ensemble's JSON) becomes `core/ensemble.json`; its metadata
    goes in `metadata["core"]`."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    stamp = created_at.strftime("%Y%m%d-%H%M%S")
    path = models_dir / f"{stamp}.tar.gz"
    suffix = 1
    while path.exists():
        suffix += 1
        path = models_dir / f"{stamp}-{suffix}.tar.gz"
    meta = {"format": FORMAT, "created_at": created_at.isoformat(), **metadata}
    files = {
        "metadata.json": json.dumps(meta, indent=2, sort_keys=True).encode(),
        "nlu/model.onnx": onnx,
        "nlu/tokenizer.json": tokenizer_json.encode(),
        "nlu/labels.json": json.dumps({k: list(v) for k, v in labels.items()}, indent=1).encode(),
        "nlu/rules.json": json.dumps(rules, indent=1, ensure_ascii=False).encode(),
    }
    if onnx_int8 is not None:
        files[INT8_MEMBER] = onnx_int8
    if core_ensemble is not None:
        files[ENSEMBLE_MEMBER] = json.dumps(core_ensemble, ensure_ascii=False).encode()
    partial = path.with_name(f".{path.name}.partial")
    with tarfile.open(partial, "w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = int(created_at.timestamp())
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    partial.rename(path)
    return path


def nlu_fingerprint(
    nlu: NluData, config: Config, settings: Mapping[str, Any], encoder_dir: Path
) -> str:
    """SHA-256 over everything NLU training depends on: examples (text, intent, entities),
    synonyms, regexes, lookup tables, the NLU pipeline, the training settings, and the
    encoder's config and weights. File order and YAML formatting do not matter."""
    examples = sorted(
        json.dumps(
            [
                e.text,
                e.intent,
                sorted([a.entity, a.start, a.end, a.value, a.role, a.group] for a in e.entities),
            ],
            default=str,
        )
        for e in nlu.examples
    )
    payload = {
        "version": FINGERPRINT_VERSION,
        "examples": examples,
        "synonyms": sorted([s.value, sorted(s.examples)] for s in nlu.synonyms),
        "regexes": sorted([r.name, sorted(r.patterns)] for r in nlu.regexes),
        "lookups": sorted([t.name, sorted(t.elements)] for t in nlu.lookups),
        "language": config.language,
        "pipeline": [[c.name, c.options] for c in config.pipeline],
        "settings": dict(settings),
        "encoder": _encoder_digest(encoder_dir),
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _encoder_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix in {".json", ".txt", ".safetensors", ".bin"}:
            digest.update(path.name.encode())
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()
