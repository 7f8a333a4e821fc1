"""Deliberately broken bot projects: each defect is reported once, where it is, with a hint.

Every folder under `tests/fixtures/broken/` except `_base` is one defect: the files that
differ from the valid `_base` project (a file `<name>.DELETE` removes `<name>`), and an
`expected.yml` naming the problem(s) the defect must produce, at which level, file and line.
The case passes when every expected problem is reported, no other error is, the exit code of
`parley validate` is the expected one, and nothing raised on the way.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.project.loader import read_project
from schemas.project.problems import Level, Problem
from schemas.project.validation import validate
from services.validate_cli import run_validate

BROKEN = Path(__file__).resolve().parent.parent / "fixtures" / "broken"
BASE = BROKEN / "_base"
EXPECTED = "expected.yml"
DELETE = ".DELETE"
CASES = sorted(p.name for p in BROKEN.iterdir() if p.is_dir() and not p.name.startswith("_"))


@dataclass(frozen=True)
class ExpectedProblem:
    """One problem a defect must produce."""

    level: Level
    file: str
    line: int | None
    message: str
    hint: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        hint = f" (hint containing {self.hint!r})" if self.hint else ""
        return f"{where}: {self.level.value}: ...{self.message}...{hint}"


@dataclass(frozen=True)
class Case:
    """A broken project's `expected.yml`."""

    description: str
    problems: tuple[ExpectedProblem, ...]
    exit_code: int


def load_case(name: str) -> Case:
    """The case's `expected.yml`, checked for shape so a typo in a fixture fails loudly."""
    data: Any = yaml.safe_load((BROKEN / name / EXPECTED).read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{name}/{EXPECTED} should be a mapping"
    assert set(data) == {"description", "problems", "exit_code"}, f"{name}: keys {sorted(data)}"
    assert isinstance(data["description"], str), f"{name}: description"
    assert data["description"].strip(), f"{name}: empty description"
    assert data["exit_code"] in (0, 1), f"{name}: exit_code {data['exit_code']!r}"
    assert isinstance(data["problems"], list), f"{name}: problems should be a list"
    assert data["problems"], f"{name}: no problems"
    problems = []
    for item in data["problems"]:
        assert isinstance(item, dict), f"{name}: a problem should be a mapping"
        assert (
            {"level", "file", "line", "message"}
            <= set(item)
            <= {
                "level",
                "file",
                "line",
                "message",
                "hint",
            }
        ), f"{name}: problem keys {sorted(item)}"
        assert item["line"] is None or isinstance(item["line"], int), f"{name}: line"
        problems.append(
            ExpectedProblem(
                level=Level(item["level"]),
                file=str(item["file"]),
                line=item["line"],
                message=str(item["message"]),
                hint=str(item.get("hint") or ""),
            )
        )
    return Case(data["description"], tuple(problems), data["exit_code"])


def overlay_files(name: str) -> list[Path]:
    """The case's files other than `expected.yml`, relative to the case folder."""
    folder = BROKEN / name
    return sorted(
        p.relative_to(folder)
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder) != Path(EXPECTED)
    )


def build_project(name: str, tmp_path: Path) -> Path:
    """A copy of `_base` with the case's files laid over it (bytes, so any encoding survives)."""
    project = tmp_path / "project"
    shutil.copytree(BASE, project)
    for relative in overlay_files(name):
        if relative.name.endswith(DELETE):
            target = project / relative.with_name(relative.name.removesuffix(DELETE))
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
            continue
        target = project / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((BROKEN / name / relative).read_bytes())
    return project


def problems_of(project: Path) -> list[Problem]:
    """What `parley validate` finds: the reading problems, then the validation ones."""
    loaded, problems = read_project(project)
    return problems + validate(loaded)


def relative_file(problem: Problem, project: Path) -> str:
    try:
        return problem.source.file.resolve().relative_to(project.resolve()).as_posix()
    except ValueError:
        return str(problem.source.file)


def matches(problem: Problem, expected: ExpectedProblem, project: Path) -> bool:
    return (
        problem.level is expected.level
        and relative_file(problem, project) == expected.file
        and problem.source.line == expected.line
        and expected.message in problem.message
        and expected.hint in problem.hint
    )


def exit_code_of(project: Path, capsys: pytest.CaptureFixture[str]) -> int:
    """`parley validate --project <project> --quiet`, run in-process."""
    args = argparse.Namespace(
        project=str(project), fail_on_warnings=False, max_history=None, quiet=True
    )
    code = run_validate(args, None)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code


def test_the_base_project_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    problems = problems_of(BASE)
    assert problems == [], "\n".join(p.render(BASE) for p in problems)
    args = argparse.Namespace(
        project=str(BASE), fail_on_warnings=True, max_history=None, quiet=True
    )
    assert run_validate(args, None) == 0
    assert "0 error(s), 0 warning(s)" in capsys.readouterr().out


def test_there_are_cases() -> None:
    assert len(CASES) >= 30


def test_every_case_has_an_expected_file() -> None:
    missing = [name for name in CASES if not (BROKEN / name / EXPECTED).is_file()]
    assert missing == []


@pytest.mark.parametrize("name", CASES)
def test_every_overlay_changes_the_base(name: str) -> None:
    """A fixture file equal to the base one (or deleting nothing) would test nothing."""
    overlays = overlay_files(name)
    assert overlays, f"{name} changes nothing"
    for relative in overlays:
        if relative.name.endswith(DELETE):
            base = BASE / relative.with_name(relative.name.removesuffix(DELETE))
            assert base.exists(), f"{name}: {relative} deletes nothing"
            assert (BROKEN / name / relative).read_bytes() == b"", f"{name}: {relative}"
        else:
            base = BASE / relative
            if base.is_file():
                assert base.read_bytes() != (BROKEN / name / relative).read_bytes(), (
                    f"{name}: {relative} is the same as in _base"
                )


@pytest.mark.parametrize("name", CASES)
def test_a_broken_project_reports_its_defect(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = load_case(name)
    project = build_project(name, tmp_path)
    problems = problems_of(project)
    report = "\n".join(p.render(project) for p in problems) or "(no problems)"

    matched: set[int] = set()
    for expected in case.problems:
        found = [
            i
            for i, problem in enumerate(problems)
            if i not in matched and matches(problem, expected, project)
        ]
        assert found, f"{case.description}\nexpected: {expected}\nreported:\n{report}"
        matched.add(found[0])

    others = [p for i, p in enumerate(problems) if i not in matched and p.level is Level.ERROR]
    assert others == [], (
        f"{case.description}\nerrors beyond the expected ones:\n"
        + "\n".join(p.render(project) for p in others)
        + f"\nall reported:\n{report}"
    )
    assert exit_code_of(project, capsys) == case.exit_code
