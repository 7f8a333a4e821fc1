"""Reading untrusted YAML values into typed ones, turning each mismatch into a located problem."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from schemas.project._yaml import LineDict, LineList
from schemas.project.problems import Problem, Source

_TYPE_NAMES = {
    dict: "a mapping",
    LineDict: "a mapping",
    list: "a list",
    LineList: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true/false",
    type(None): "empty",
}


def type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def line_of(container: Any, key: Any, default: int | None = None) -> int | None:
    if isinstance(container, LineDict | LineList):
        return container.line_of(key)
    return default


class FileReader:
    """Reads the values of one file, collecting problems instead of raising."""

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems

    def source(self, line: int | None) -> Source:
        return Source(self.path, line)

    def error(self, line: int | None, message: str, hint: str = "", code: str = "") -> None:
        self.problems.append(Problem.error(self.path, line, message, hint, code))

    def warning(self, line: int | None, message: str, hint: str = "", code: str = "") -> None:
        self.problems.append(Problem.warning(self.path, line, message, hint, code))

    def mapping(self, value: Any, line: int | None, what: str) -> LineDict | None:
        if isinstance(value, LineDict):
            return value
        self.error(
            line,
            f"{what} should be a mapping, not {type_name(value)}",
            "write it as `key: value` lines indented under it",
        )
        return None

    def sequence(self, value: Any, line: int | None, what: str) -> LineList | None:
        if isinstance(value, LineList):
            return value
        if isinstance(value, list):
            located = LineList(value)
            located.line, located.lines = line or 0, [line or 0] * len(value)
            return located
        self.error(
            line,
            f"{what} should be a list, not {type_name(value)}",
            "write each item on its own line starting with `- `",
        )
        return None

    def string(self, value: Any, line: int | None, what: str) -> str | None:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        self.error(
            line,
            f"{what} should be a string, not {type_name(value)}",
            "quote the value if YAML reads it as something else",
        )
        return None

    def strings(self, value: Any, line: int | None, what: str) -> list[str]:
        """A list of strings; a single string is accepted as a list of one."""
        if isinstance(value, str):
            return [value]
        items = self.sequence(value, line, what)
        if items is None:
            return []
        out = []
        for index, item in enumerate(items):
            text = self.string(item, items.line_of(index), f"an item of {what}")
            if text is not None:
                out.append(text)
        return out

    def boolean(self, value: Any, line: int | None, what: str, default: bool) -> bool:
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        self.error(line, f"{what} should be true or false, not {value!r}")
        return default

    def number(self, value: Any, line: int | None, what: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        self.error(line, f"{what} should be a number, not {value!r}")
        return None

    def unknown_keys(
        self, mapping: LineDict, allowed: Iterable[str], what: str, *, error: bool = False
    ) -> None:
        allowed = list(allowed)
        for key in mapping:
            if key in allowed:
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(allowed)}"
            report = self.error if error else self.warning
            report(mapping.line_of(key), f"unknown key `{key}` in {what}", hint)


def suggest(name: str, known: Iterable[str]) -> str:
    """A 'did you mean' hint, or an empty string."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f"did you mean `{close[0]}`?" if close else ""
