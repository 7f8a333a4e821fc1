"""Bytes on the wire to envelopes and back: JSON, validated against the topic's payload."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from schemas.envelopes import Envelope
from services.common.errors import DecodeError

CONTENT_TYPE = "application/json"


def encode(message: Envelope) -> bytes:
    """The JSON bytes of an envelope."""
    return message.model_dump_json().encode()


@lru_cache(maxsize=64)
def _adapter(payload: Any) -> TypeAdapter[Any]:
    return TypeAdapter(payload)


def decode(data: bytes, payload: Any) -> Any:
    """Validate `data` as `payload` (a model or an annotated union); `DecodeError` says why not."""
    try:
        return _adapter(payload).validate_json(data)
    except ValidationError as exc:
        raise DecodeError(_describe(exc)) from exc


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "<message>"
        problems.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(problems)
    suffix = f" (+{more} more)" if more > 0 else ""
    return "undecodable message: " + "; ".join(problems) + suffix
