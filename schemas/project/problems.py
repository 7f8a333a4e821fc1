"""Problems found in a bot project: what is wrong, where (`file:line`), and what to do."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Level(StrEnum):
    """How bad a problem is: errors stop training; warnings do not."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Source:
    """Where something was defined."""

    file: Path
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else str(self.file)


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem, with its location and a hint a person can act on."""

    level: Level
    source: Source
    message: str
    hint: str = ""
    code: str = ""

    @classmethod
    def error(
        cls, file: Path, line: int | None, message: str, hint: str = "", code: str = ""
    ) -> Problem:
        return cls(Level.ERROR, Source(file, line), message, hint, code)

    @classmethod
    def warning(
        cls, file: Path, line: int | None, message: str, hint: str = "", code: str = ""
    ) -> Problem:
        return cls(Level.WARNING, Source(file, line), message, hint, code)

    def render(self, root: Path | None = None) -> str:
        """`file:line: error: message (hint: ...)`, the file relative to `root` when inside it."""
        file = self.source.file
        message = self.message
        if root is not None:
            base = root.resolve()
            try:
                relative = file.resolve().relative_to(base)
                file = relative if str(relative) != "." else root
            except ValueError:
                pass
            # Locations quoted inside the message are made relative the same way.
            message = message.replace(f"{base}/", "")
        where = f"{file}:{self.source.line}" if self.source.line else str(file)
        hint = f"\n    hint: {self.hint}" if self.hint else ""
        return f"{where}: {self.level.value}: {message}{hint}"


class ProjectFileError(Exception):
    """A file that cannot be read at all (unreadable, not UTF-8, not YAML)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.render())
        self.problem = problem


class ProjectError(Exception):
    """A project with errors; `problems` lists them all."""

    def __init__(self, problems: list[Problem]) -> None:
        errors = [p for p in problems if p.level is Level.ERROR]
        lines = "\n".join(p.render() for p in errors[:20])
        more = f"\n... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"the bot project has {len(errors)} error(s):\n{lines}{more}")
        self.problems = problems
