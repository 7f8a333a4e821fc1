"""Loading a Rasa 3.x project folder into typed models, with every problem located."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from schemas.project._domain_reader import DomainParts, read_domain_file, read_responses
from schemas.project._read import FileReader
from schemas.project._yaml import LineDict, LineList, load_yaml
from schemas.project.config import Config, Endpoints, read_config, read_endpoints
from schemas.project.domain import Domain, SessionConfig
from schemas.project.nlu import NluData, read_nlu_section
from schemas.project.problems import Level, Problem, ProjectError, ProjectFileError, Source
from schemas.project.stories import Story, read_story_section

YAML_SUFFIXES = (".yml", ".yaml")
SUPPORTED_VERSION = re.compile(r"^(2\.0|3\.\d+)$")
LATEST_MINOR = 1  # Rasa 3's latest training-data format is "3.1"
DATA_KEYS = ("version", "nlu", "stories", "rules", "responses")


@dataclass
class Project:
    """A bot project: its config, merged domain, NLU data, stories, rules and test stories."""

    root: Path
    config: Config = field(default_factory=Config)
    domain: Domain = field(default_factory=Domain)
    nlu: NluData = field(default_factory=NluData)
    stories: list[Story] = field(default_factory=list)
    rules: list[Story] = field(default_factory=list)
    test_stories: list[Story] = field(default_factory=list)
    endpoints: Endpoints = field(default_factory=Endpoints)
    credentials: dict[str, Any] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    # Parts that could not be read ("domain", "data", or a domain section such as "intents"):
    # the validator skips checks against them rather than repeat the problem many times.
    incomplete: set[str] = field(default_factory=set)
    unreadable: set[Path] = field(default_factory=set)
    # Response names quoted in the project's own action code (`actions/`), so responses a
    # custom action utters are not reported as unused.
    responses_in_actions: set[str] = field(default_factory=set)


def read_project(root: Path | str) -> tuple[Project, list[Problem]]:
    """Read everything readable; return the project and every problem found on the way."""
    root = Path(root)
    problems: list[Problem] = []
    project = Project(root)
    if not root.is_dir():
        problems.append(
            Problem.error(
                root,
                None,
                "the project folder does not exist",
                "pass the folder holding config.yml and domain.yml",
            )
        )
        return project, problems

    config_file = root / "config.yml"
    if config_file.is_file():
        data = _load(config_file, problems, project, require_version=False)
        if data is not None:
            project.config = read_config(data, FileReader(config_file, problems))
    else:
        problems.append(
            Problem.error(
                config_file,
                None,
                "config.yml is missing",
                "every Rasa project has a config.yml (language, pipeline, policies)",
            )
        )

    parts = DomainParts()
    domain_files = _domain_files(root, problems)
    if not domain_files:
        project.incomplete.add("domain")
    for path in domain_files:
        data = _load(path, problems, project)
        if data is not None:
            read_domain_file(data, FileReader(path, problems), parts)
        elif path in project.unreadable:
            project.incomplete.add("domain")

    data_dir = root / "data"
    if data_dir.is_dir():
        for path in _yaml_files(data_dir):
            kind = "test" if path.name.startswith("test_") else "story"
            _read_data_file(path, kind, project, parts, problems)
    else:
        problems.append(
            Problem.warning(
                data_dir,
                None,
                "no data/ folder: nothing to train on",
                "put nlu, stories and rules files under data/",
            )
        )
    tests_dir = root / "tests"
    if tests_dir.is_dir():
        for path in _yaml_files(tests_dir):
            if path.name.startswith("test_"):
                _read_data_file(path, "test", project, parts, problems)

    project.responses_in_actions = _responses_in_actions(root)
    project.domain = _merge_domain(parts, domain_files, problems)
    project.incomplete |= parts.broken
    for name, target in (("endpoints.yml", "endpoints"), ("credentials.yml", "credentials")):
        path = root / name
        if path.is_file():
            data = _load(path, problems, project, require_version=False)
            if data is not None and target == "endpoints":
                project.endpoints = read_endpoints(data, FileReader(path, problems))
            elif data is not None:
                project.credentials = dict(data)
    return project, problems


RESPONSE_LITERAL = re.compile(r"""["'](utter_[A-Za-z0-9_/]+)["']""")


def _responses_in_actions(root: Path) -> set[str]:
    """`utter_*` names quoted in `actions.py` or under `actions/` (read as text, never run)."""
    files = [root / "actions.py"] if (root / "actions.py").is_file() else []
    if (root / "actions").is_dir():
        files += sorted((root / "actions").rglob("*.py"))
    found: set[str] = set()
    for path in files:
        try:
            found.update(RESPONSE_LITERAL.findall(path.read_text(errors="replace")))
        except OSError:
            continue
    return found


def load_project(root: Path | str) -> Project:
    """The project, or a `ProjectError` listing every error (warnings are not errors)."""
    project, problems = read_project(root)
    if any(p.level is Level.ERROR for p in problems):
        raise ProjectError(problems)
    return project


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())


def _domain_files(root: Path, problems: list[Problem]) -> list[Path]:
    single, folder = root / "domain.yml", root / "domain"
    if folder.is_dir():
        files = _yaml_files(folder)
        if single.is_file():
            files.insert(0, single)
        if files:
            return files
    if single.is_file():
        return [single]
    problems.append(
        Problem.error(
            single,
            None,
            "no domain: neither domain.yml nor domain/",
            "add a domain.yml listing intents, entities, slots, responses",
        )
    )
    return []


def _load(
    path: Path, problems: list[Problem], project: Project, *, require_version: bool = True
) -> LineDict | None:
    project.files.append(path)
    try:
        data = load_yaml(path)
    except ProjectFileError as exc:
        problems.append(exc.problem)
        project.unreadable.add(path)
        return None
    if data is None:
        if require_version:  # an endpoints or credentials file with everything commented out
            problems.append(Problem.warning(path, None, "the file is empty"))
        return None
    if not isinstance(data, LineDict):
        project.unreadable.add(path)
        problems.append(
            Problem.error(
                path,
                1,
                "the file should hold a mapping at the top level",
                'start with `version: "3.1"` and the file\'s sections',
            )
        )
        return None
    if require_version:
        _check_version(path, data, problems)
    return data


def _check_version(path: Path, data: LineDict, problems: list[Problem]) -> None:
    version = data.get("version")
    if version is None:
        problems.append(
            Problem.warning(
                path, 1, "no `version` key", 'add `version: "3.1"` as the first line', "no-version"
            )
        )
    elif isinstance(version, float | int):
        problems.append(
            Problem.error(
                path,
                data.line_of("version"),
                f"`version: {version}` is a number; it must be a quoted string",
                f'write `version: "{version}"`',
                "version",
            )
        )
    elif not isinstance(version, str) or not SUPPORTED_VERSION.match(version):
        problems.append(
            Problem.error(
                path,
                data.line_of("version"),
                f"unsupported version {version!r}",
                'use `version: "3.1"` (quoted); "2.0" and "3.x" are read',
                "version",
            )
        )
    elif version.startswith("3.") and int(version[2:]) > LATEST_MINOR:
        problems.append(
            Problem.warning(
                path,
                data.line_of("version"),
                f"version {version!r} is newer than the latest training-data format, 3.1; "
                "Rasa 3 skips such files (Parley reads it)",
                'write `version: "3.1"`: the version names the file format, not a Rasa release',
                "version",
            )
        )


def _read_data_file(
    path: Path, kind: str, project: Project, parts: DomainParts, problems: list[Problem]
) -> None:
    data = _load(path, problems, project)
    if data is None:
        if path in project.unreadable:
            project.incomplete.add("data")
        return
    reader = FileReader(path, problems)
    reader.unknown_keys(data, DATA_KEYS, "a data file")
    if "nlu" in data:
        items = reader.sequence(data["nlu"], data.line_of("nlu"), "`nlu`")
        if isinstance(items, LineList):
            read_nlu_section(items, reader, project.nlu)
    for key, story_kind, target in (
        (
            "stories",
            "test" if kind == "test" else "story",
            project.test_stories if kind == "test" else project.stories,
        ),
        ("rules", "rule", project.rules),
    ):
        if key in data:
            items = reader.sequence(data[key], data.line_of(key), f"`{key}`")
            if isinstance(items, LineList):
                read_story_section(items, story_kind, reader, target)  # type: ignore[arg-type]
    if "responses" in data:
        read_responses(data["responses"], data.line_of("responses"), reader, parts)


T = TypeVar("T")


def _unique(items: Iterable[T], what: str, problems: list[Problem]) -> dict[str, T]:
    out: dict[str, T] = {}
    for item in items:
        name: str = getattr(item, "name")  # noqa: B009 - every domain item has a name
        source: Source = getattr(item, "source")  # noqa: B009
        if name in out:
            first: Source = getattr(out[name], "source")  # noqa: B009
            problems.append(
                Problem.warning(
                    source.file,
                    source.line,
                    f"{what} `{name}` is defined twice (first at {first})",
                    "keep one definition; the first one is used",
                )
            )
            continue
        out[name] = item
    return out


def _merge_domain(parts: DomainParts, files: list[Path], problems: list[Problem]) -> Domain:
    return Domain(
        intents=_unique(parts.intents, "intent", problems),
        entities=_unique(parts.entities, "entity", problems),
        slots=_unique(parts.slots, "slot", problems),
        responses=_unique(parts.responses, "response", problems),
        forms=_unique(parts.forms, "form", problems),
        actions=_unique(parts.actions, "action", problems),
        session_config=parts.session_config or SessionConfig(),
        store_entities_as_slots=(
            True if parts.store_entities_as_slots is None else parts.store_entities_as_slots
        ),
        files=tuple(Source(f) for f in files),
    )


def read_nlu_file(path: Path | str) -> tuple[NluData, list[Problem]]:
    """A standalone NLU file (a benchmark split, say): its data and problems."""
    path = Path(path)
    problems: list[Problem] = []
    project = Project(path.parent)
    _read_data_file(path, "story", project, DomainParts(), problems)
    return project.nlu, problems
