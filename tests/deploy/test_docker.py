"""deploy/docker: the images' Dockerfile, checked without a docker engine (hadolint-like rules
that matter here), and the entrypoint that turns mounted secret files into settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.schemas import REPO

DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
ENTRYPOINT = REPO / "deploy" / "docker" / "secret_env.py"
TARGETS = {"nlu": 8081, "dialogue": 8083, "actions": 8082, "scheduler": 8084, "gateway": 5005}
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|make|build-essential|cmake|clang|git|curl|wget)\b")
SECRET_NAMES = re.compile(r"(PASSWORD|SECRET|TOKEN|_KEY|DATABASE_URL|REDIS_URL)$", re.I)
CREDENTIAL_IN_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(text: str) -> list[Stage]:
    """Instructions per stage: continuation lines joined, comments and blank lines dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "a continuation line ends the file"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(name, words[0]))
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    return stages


STAGES = parse(DOCKERFILE.read_text())
BY_NAME = {stage.name: stage for stage in STAGES}


def chain(name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    stages = [BY_NAME[name]]
    while stages[-1].base in BY_NAME:
        stages.append(BY_NAME[stages[-1].base])
    return stages


def instructions(name: str, keyword: str) -> list[str]:
    """Every `keyword` argument along the stage's chain, in build order."""
    return [arg for stage in reversed(chain(name)) for k, arg in stage.instructions if k == keyword]


def test_one_target_per_service_and_multi_stage() -> None:
    assert set(TARGETS) <= set(BY_NAME)
    assert len(STAGES) >= 3
    bases = {stage.base for stage in STAGES if stage.base not in BY_NAME}
    assert bases == {"${PYTHON_IMAGE}"}
    [image] = [
        line.removeprefix("ARG PYTHON_IMAGE=")
        for line in DOCKERFILE.read_text().splitlines()
        if line.startswith("ARG PYTHON_IMAGE=")
    ]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", image), "a pinned slim Python"


@pytest.mark.parametrize("target", list(TARGETS))
def test_final_images_run_as_a_high_uid_without_build_tools(target: str) -> None:
    users = instructions(target, "USER")
    assert users, "no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert int(uid) >= 10000, "numeric, high UID (checkov CKV_K8S_40, hadolint DL3002)"
    assert int(gid) >= 10000
    for run in instructions(target, "RUN"):
        assert not BUILD_TOOLS.search(run), run
        assert "pip install" not in run, "packages are installed in a build stage only"
    # What the final image has comes from build stages by COPY --from, or is the project.
    copies = instructions(target, "COPY")
    assert all(not c.startswith("--from=") or "/opt/parley" in c for c in copies)
    assert not instructions(target, "ADD"), "COPY, not ADD (hadolint DL3020)"
    # The venv copied in has no pip: the build stages uninstall it.
    for stage in {c.split()[0].removeprefix("--from=") for c in copies if c.startswith("--from=")}:
        assert any("pip uninstall --yes pip" in r for _, r in BY_NAME[stage].instructions)


@pytest.mark.parametrize(("target", "port"), list(TARGETS.items()))
def test_each_target_runs_its_worker_through_the_secret_entrypoint(target: str, port: int) -> None:
    [entrypoint] = instructions(target, "ENTRYPOINT")
    assert json.loads(entrypoint) == ["/opt/parley/bin/python", "/opt/secret_env.py"]
    cmd = json.loads(instructions(target, "CMD")[-1])  # JSON form (hadolint DL3025)
    assert cmd[:3] == ["parley", "worker", target]
    exposed = {int(p) for line in instructions(target, "EXPOSE") for p in line.split()}
    assert port in exposed


def test_no_secrets_or_models_in_the_images() -> None:
    for stage in STAGES:
        for keyword, argument in stage.instructions:
            if keyword in ("ENV", "ARG"):
                names = [word.split("=", 1)[0] for word in argument.split()]
                assert not [n for n in names if SECRET_NAMES.search(n)], argument
                assert not CREDENTIAL_IN_URL.search(argument), argument
            if keyword == "COPY":
                assert "models" not in argument, argument
                assert ".tar.gz" not in argument, argument
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    for pattern in ("*", "**/models/", "**/*.tar.gz", "**/.env", "**/credentials*.yml"):
        assert pattern in ignore
    assert "!deploy/docker/secret_env.py" in ignore


def test_the_nlu_image_has_the_triton_client() -> None:
    [copy] = [c for c in instructions("nlu", "COPY") if c.startswith("--from=")]
    assert copy.startswith("--from=build-nlu ")
    assert any("tritonclient[grpc]" in r for _, r in BY_NAME["build-nlu"].instructions)


def run_entrypoint(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ENTRYPOINT), *command],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_entrypoint_sets_settings_from_secret_files(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "DATABASE_URL").write_text("postgresql+asyncpg://parley:s3cret@db/parley\n")
    (secrets / "REDIS_URL").write_text("redis://:pw@redis:6379/0")
    (secrets / "agents.yaml").write_text("not a variable name: ignored")
    (secrets / "..data").mkdir()  # what a Secret volume holds besides its keys
    show = "import os, json; print(json.dumps({k: os.environ.get(k) for k in "
    show += "('DATABASE_URL', 'REDIS_URL', 'agents.yaml')}))"
    result = run_entrypoint(
        {"PARLEY_SECRETS_DIR": f"{tmp_path / 'absent'}:{secrets}", "REDIS_URL": "redis://set"},
        sys.executable,
        "-c",
        show,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "DATABASE_URL": "postgresql+asyncpg://parley:s3cret@db/parley",
        "REDIS_URL": "redis://set",  # the environment wins over a file
        "agents.yaml": None,
    }
    # The log names what came from files, never the values.
    assert "secret_env: set DATABASE_URL from files" in result.stderr
    assert "s3cret" not in result.stderr


def test_the_entrypoint_passes_the_exit_status_and_needs_a_command(tmp_path: Path) -> None:
    failing = run_entrypoint(
        {"PARLEY_SECRETS_DIR": str(tmp_path)}, sys.executable, "-c", "raise SystemExit(3)"
    )
    assert failing.returncode == 3
    assert failing.stderr == ""
    assert run_entrypoint({}).returncode == 2
