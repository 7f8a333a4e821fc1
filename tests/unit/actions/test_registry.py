"""Loading the action package: every module imported, broken code a clear start-up error
(file, line, hint) instead of rasa-sdk's sys.exit, and hot reload that keeps working actions."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from services.actions.registry import ActionRegistry, PackageLoadError, resolve_package
from tests.unit.actions._calls import FIXTURE_PACKAGE
from tests.unit.actions.conftest import LoadPackage

HELLO = """
from rasa_sdk import Action


class ActionHello(Action):
    def name(self):
        return "action_hello"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="{text}")
        return []
"""


def write_package(root: Path, name: str, files: dict[str, str]) -> Path:
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for relative, text in files.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_the_fixture_package_registers_its_concrete_actions(registry: ActionRegistry) -> None:
    assert registry.names() == sorted(
        [
            "action_sync_hello",
            "action_async_hello",
            "action_nothing",
            "action_legacy_template",
            "action_raise",
            "action_reject",
            "action_garbage",
            "action_every_event",
            "action_rendezvous",
            "action_block_sync",
            "action_hang_async",
            "action_gated",
            "validate_repair_form",
            "action_validate_slot_mappings",
            "action_remind_later",
        ]
    )
    sync, async_ = registry.get("action_sync_hello"), registry.get("action_async_hello")
    assert sync is not None
    assert async_ is not None
    assert (sync.is_async, async_.is_async) == (False, True)
    assert sync.source == "actions_pkg.basic.ActionSyncHello"
    assert registry.get("nope") is None


def test_package_spec_is_a_module_name_or_a_path(tmp_path: Path) -> None:
    assert resolve_package("actions") == ("actions", None)
    assert resolve_package("my_bot.actions") == ("my_bot.actions", None)
    assert resolve_package(str(FIXTURE_PACKAGE)) == ("actions_pkg", FIXTURE_PACKAGE.parent)
    assert resolve_package(str(tmp_path / "acts.py")) == ("acts", tmp_path)


def test_subpackages_are_imported_and_actions_imported_into_the_package_count(
    tmp_path: Path, load_package: LoadPackage
) -> None:
    write_package(
        tmp_path,
        "nested_pkg",
        {
            "deep/__init__.py": "",
            "deep/more.py": HELLO.format(text="deep"),
            "reexport.py": "from nested_pkg.deep.more import ActionHello as Again\n",
        },
    )
    registry = load_package(str(tmp_path / "nested_pkg"))
    registry.load()
    action = registry.get("action_hello")
    assert action is not None
    assert action.source == "nested_pkg.deep.more.ActionHello"
    assert registry.names() == ["action_hello"]


@pytest.mark.parametrize(
    ("files", "broken_file", "line", "reason", "hint"),
    [
        (
            {"actions.py": "from rasa_sdk import Action\n\nclass Broken(Action:\n    pass\n"},
            "actions.py",
            3,
            "SyntaxError",
            "syntax error",
        ),
        (
            {"actions.py": "import os\nimport no_such_dependency_xyz\n"},
            "actions.py",
            2,
            "No module named 'no_such_dependency_xyz'",
            "install 'no_such_dependency_xyz'",
        ),
        (
            {"actions.py": "from rasa_sdk import NoSuchName\n"},
            "actions.py",
            1,
            "ImportError: cannot import name 'NoSuchName'",
            "does not exist",
        ),
        (
            {
                "helpers.py": "def boom():\n    raise RuntimeError('no config')\n",
                "z.py": "from {pkg}.helpers import boom\n\nboom()\n",
            },
            "helpers.py",
            2,
            "RuntimeError: no config",
            "module level",
        ),
        (
            {"actions.py": "import sys\nsys.exit(1)\n"},
            "actions.py",
            2,
            "SystemExit: 1",
            "sys.exit()",
        ),
        (
            {
                "actions.py": "from rasa_sdk import Action\n\n\nclass NoName(Action):\n"
                "    def run(self, dispatcher, tracker, domain):\n        return []\n"
            },
            "actions.py",
            4,
            "NoName cannot be registered: NotImplementedError",
            "name()",
        ),
    ],
    ids=["syntax", "missing-dependency", "bad-import", "raises", "sys-exit", "no-name"],
)
def test_a_broken_package_is_a_start_up_error_with_file_line_and_hint(
    tmp_path: Path,
    load_package: LoadPackage,
    request: pytest.FixtureRequest,
    files: dict[str, str],
    broken_file: str,
    line: int,
    reason: str,
    hint: str,
) -> None:
    name = f"broken_{request.node.callspec.id.replace('-', '_')}"
    package = write_package(tmp_path, name, {k: v.replace("{pkg}", name) for k, v in files.items()})
    registry = load_package(str(package))
    with pytest.raises(PackageLoadError) as caught:
        registry.load()
    error = caught.value
    assert error.file == str(package / broken_file)
    assert error.line == line
    assert reason in str(error)
    assert hint in error.hint
    assert f"{package / broken_file}:{line}" in str(error)
    assert not registry.loaded


def test_an_unknown_package_name_hints_at_the_working_directory(
    load_package: LoadPackage,
) -> None:
    registry = load_package("no_such_actions_package_xyz")
    with pytest.raises(PackageLoadError, match="No module named") as caught:
        registry.load()
    assert "--actions" in caught.value.hint
    assert caught.value.file is None


def touch_later(path: Path, text: str) -> None:
    """Rewrite a file with a strictly newer mtime (coarse file-system clocks)."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


def test_reload_picks_up_edits_new_modules_and_keeps_the_old_actions_on_a_broken_edit(
    tmp_path: Path, load_package: LoadPackage
) -> None:
    package = write_package(tmp_path, "live_pkg", {"actions.py": HELLO.format(text="v1")})
    registry = load_package(str(package))
    registry.load()
    first = registry.get("action_hello")
    assert first is not None
    assert not registry.changed()
    assert not registry.reload()

    touch_later(package / "actions.py", HELLO.format(text="version two").replace("hello", "hi"))
    assert registry.changed()
    assert registry.reload()
    assert registry.names() == ["action_hi"]

    (package / "extra.py").write_text(HELLO.format(text="x").replace("hello", "extra"))
    assert registry.reload()
    assert registry.names() == ["action_extra", "action_hi"]

    touch_later(package / "actions.py", "def broken(:\n")
    assert not registry.reload()
    assert registry.names() == ["action_extra", "action_hi"]  # the previous actions are kept
    assert sys.modules["live_pkg.actions"].__file__ == str(package / "actions.py")

    touch_later(package / "actions.py", HELLO.format(text="fixed"))
    assert registry.reload()
    assert registry.names() == ["action_extra", "action_hello"]


async def test_watch_polls_at_the_given_interval_until_stopped(
    tmp_path: Path, load_package: LoadPackage
) -> None:
    package = write_package(tmp_path, "watched_pkg", {"actions.py": HELLO.format(text="v1")})
    registry = load_package(str(package))
    registry.load()
    stop = asyncio.Event()
    watcher = asyncio.create_task(registry.watch(0.01, stop))
    touch_later(package / "actions.py", HELLO.format(text="v2").replace("hello", "watched"))
    for _ in range(500):
        if registry.names() == ["action_watched"]:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await watcher
    assert registry.names() == ["action_watched"]


def test_a_single_module_package_loads_and_reloads(
    tmp_path: Path, load_package: LoadPackage
) -> None:
    module = tmp_path / "single_actions.py"
    module.write_text(HELLO.format(text="one"))
    (tmp_path / "unrelated.py").write_text("x = 1\n")
    registry = load_package(str(module))
    registry.load()
    assert registry.names() == ["action_hello"]
    touch_later(tmp_path / "unrelated.py", "x = 2\n")
    assert not registry.changed()  # only the module itself is watched
    touch_later(module, HELLO.format(text="two").replace("hello", "single"))
    assert registry.reload()
    assert registry.names() == ["action_single"]
