"""Finding and opening Parley's model archives, `models/<timestamp>.tar.gz`, whatever part of them
a service needs: the NLU service reads `nlu/...`, the dialogue service `core/...`
(`services/nlu/archive.py` describes the members).
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

__all__ = [
    "ArchiveError",
    "archives",
    "find_by_fingerprint",
    "latest_archive",
    "read_members",
    "read_metadata",
    "resolve_model",
]


class ArchiveError(ValueError):
    """A file that is not a readable Parley model archive, with the reason."""


def archives(models_dir: str | Path) -> list[Path]:
    """The archives in `models_dir`, oldest first (names are timestamps, `-N` for the N-th
    archive written in the same second)."""
    directory = Path(models_dir)
    if not directory.is_dir():
        return []
    found = [p for p in directory.glob("*.tar.gz") if not p.name.startswith(".")]
    return sorted(found, key=_archive_order)


def _archive_order(path: Path) -> tuple[str, int, str]:
    stem = path.name.removesuffix(".tar.gz")
    base, _, count = stem.rpartition("-")
    if stem.count("-") >= 2 and count.isdigit():
        return base, int(count), stem
    return stem, 1, stem


def latest_archive(models_dir: str | Path) -> Path | None:
    """The newest archive in `models_dir`, or None."""
    found = archives(models_dir)
    return found[-1] if found else None


def resolve_model(model: str | Path) -> Path:
    """An archive path, or the newest archive of a directory; ArchiveError if there is none."""
    path = Path(model)
    if path.is_dir():
        newest = latest_archive(path)
        if newest is None:
            raise ArchiveError(f"{path}: no model archive (*.tar.gz); train one: parley train")
        return newest
    if not path.is_file():
        raise ArchiveError(f"{path}: no such model archive")
    return path


def read_members(path: str | Path, names: Collection[str]) -> dict[str, bytes]:
    """The contents of those of `names` the archive holds (missing ones are left out)."""
    path = Path(path)
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name in names:
                    handle = tar.extractfile(member)
                    assert handle is not None
                    out[member.name] = handle.read()
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"{path}: cannot read the model archive: {exc}") from exc
    return out


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The archive's `metadata.json`; ArchiveError when it is unreadable or missing."""
    data = read_members(path, ("metadata.json",))
    if "metadata.json" not in data:
        raise ArchiveError(f"{path}: not a Parley model archive (lacks metadata.json)")
    try:
        meta = json.loads(data["metadata.json"])
    except ValueError as exc:
        raise ArchiveError(f"{path}: malformed metadata.json: {exc}") from exc
    if not isinstance(meta, dict):
        raise ArchiveError(f"{path}: malformed metadata.json: not an object")
    return meta


def find_by_fingerprint(
    models_dir: str | Path, fingerprint: str, part: str = "nlu", **others: str
) -> Path | None:
    """The newest readable archive whose `part` (`nlu`, `core`) was trained on data with this
    fingerprint, and each part named in `others` (`core=...`) on that one; None if none is."""
    wanted = {part: fingerprint, **others}
    for path in reversed(archives(models_dir)):
        try:
            meta = read_metadata(path)
        except ArchiveError:
            continue
        if all(
            isinstance(meta.get(name), dict) and meta[name].get("fingerprint") == value
            for name, value in wanted.items()
        ):
            return path
    return None
