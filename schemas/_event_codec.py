"""Helpers behind schemas.events: wire values, legacy names, error messages."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticKnownError


class EventValidationError(ValueError):
    """An event dict names a known event type but its fields are invalid."""


def number_or_none(value: Any) -> Any:
    # Checked up front so a bad value gives one error, not one per int | float branch.
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise PydanticKnownError("float_type")
    return value


def wire_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return copy.deepcopy(value)


def translate_legacy(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the pre-3.0 ``form`` / ``form_validation`` events to their current names."""
    if name == "form":
        return {**data, "event": "active_loop"}
    if name == "form_validation":
        # Rasa: a missing `validate` means validate, i.e. not interrupted.
        validate = data.get("validate", True)
        if not isinstance(validate, bool):
            raise EventValidationError(
                "invalid 'form_validation' event: field 'validate': Input should be a valid boolean"
            )
        rest = {k: v for k, v in data.items() if k != "validate"}
        return {**rest, "event": "loop_interrupted", "is_interrupted": not validate}
    return data


def describe(error: ValidationError) -> str:
    """One line naming each invalid field and what is wrong with it."""
    parts = []
    for detail in error.errors(include_url=False):
        field = ".".join(str(part) for part in detail["loc"])
        msg = detail["msg"]
        parts.append(f"field '{field}': {msg}" if field else msg)
    return "; ".join(parts)
