"""YAML for bot projects: values that remember their line, and YAML 1.2 scalars like Rasa's.

Rasa reads project files with ruamel in YAML 1.2, where `yes`, `no`, `on`, `off` are strings
and `10:30` is not the number 630 as YAML 1.1 (PyYAML's default) would have it. Mappings come
back as `LineDict` and sequences as `LineList`, which know the line of each key or item, so
every problem can be reported as `file:line`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from schemas.project.problems import Problem, ProjectFileError

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LineDict(dict[Any, Any]):
    """A mapping that knows its own line and each key's line (1-based)."""

    line: int = 0
    lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return self.lines.get(key, self.line)


class LineList(list[Any]):
    """A sequence that knows its own line and each item's line (1-based)."""

    line: int = 0
    lines: list[int]

    def line_of(self, index: int) -> int:
        return self.lines[index] if 0 <= index < len(self.lines) else self.line


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    pass


# YAML 1.2 core schema resolvers instead of PyYAML's YAML 1.1 ones.
_Loader.yaml_implicit_resolvers = {}
_RESOLVERS = [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
]
for _tag, _pattern, _first in _RESOLVERS:
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    value = str(loader.construct_scalar(node))
    if value.startswith("0o"):
        return int(value[2:], 8)
    if value.startswith("0x"):
        return int(value[2:], 16)
    return int(value)


def _construct_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    return str(loader.construct_scalar(node)).lower() == "true"


class DuplicateKeyError(yaml.MarkedYAMLError):
    """The same key twice in one mapping (Rasa's ruamel refuses it too)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise DuplicateKeyError(
                "while reading a mapping",
                node.start_mark,
                "found an unhashable key",
                key_node.start_mark,
            ) from None
        if key in result:
            raise DuplicateKeyError(
                "while reading a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first on line {result.lines[key]})",
                key_node.start_mark,
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


def read_text(path: Path) -> str:
    """The file as UTF-8 text, or a `ProjectFileError` saying where it is not."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProjectFileError(
            Problem.error(
                path,
                None,
                f"cannot read the file: {exc.strerror or exc}",
                "check the path and its permissions",
            )
        ) from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ProjectFileError(
            Problem.error(
                path,
                line,
                f"the file is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                "save it as UTF-8 (Rasa project files must be UTF-8)",
            )
        ) from exc


def load_yaml(path: Path, text: str | None = None) -> Any:
    """Parse a YAML file; syntax errors become a `ProjectFileError` with the line."""
    if text is None:
        text = read_text(path)
    try:
        return yaml.load(text, Loader=_Loader)  # a safe loader subclass
    except yaml.MarkedYAMLError as exc:
        # An unclosed quote or bracket is reported where the parser gave up (often the end
        # of the file); where the quote or bracket opened is where the mistake is.
        last_line = text.count("\n") + 1
        context = exc.context or ""
        opened = context.startswith(("while scanning a quoted", "while parsing a flow"))
        at_end = exc.problem_mark is not None and exc.problem_mark.line + 1 >= last_line
        use_context = exc.context_mark is not None and (opened or at_end)
        mark = exc.context_mark if use_context else (exc.problem_mark or exc.context_mark)
        line = mark.line + 1 if mark is not None else None
        if line is not None:
            line = min(line, text.count("\n") + 1)
        what = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        raise ProjectFileError(
            Problem.error(path, line, f"invalid YAML: {what}{context}", _yaml_hint(what))
        ) from exc
    except yaml.YAMLError as exc:
        raise ProjectFileError(
            Problem.error(path, None, f"invalid YAML: {exc}", "check the file's syntax")
        ) from exc


def _yaml_hint(problem: str) -> str:
    if "duplicate key" in problem:
        return "merge the two entries or rename one"
    if "tab" in problem:
        return "indent with spaces, not tabs"
    if "mapping values are not allowed" in problem:
        return "quote the value if it contains ': ', or fix the indentation"
    return "check the indentation and quoting around this line"
