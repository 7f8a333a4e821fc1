"""Dependencies point inward: a walk over the imports keeps the layering honest."""

from __future__ import annotations

import ast
from pathlib import Path

import schemas

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("nlu", "dialogue", "actions", "scheduler", "gateway")
TRANSPORT_LIBRARIES = ("aiokafka", "faststream")
# Modules allowed to touch a transport library: the transports themselves, at the edge.
TRANSPORT_MODULES = {"services/common/kafka_bus.py", "services/common/memory_bus.py"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def python_files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_schemas_import_no_service() -> None:
    for path in python_files("schemas"):
        bad = {name for name in imports_of(path) if name.split(".")[0] == "services"}
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_services_never_import_each_other() -> None:
    for service in SERVICES:
        for path in python_files(f"services/{service}"):
            for name in imports_of(path):
                parts = name.split(".")
                if parts[0] == "services" and len(parts) > 1:
                    assert parts[1] in (service, "common"), (
                        f"{path.relative_to(REPO)} imports {name}"
                    )


def test_only_the_transports_import_kafka_libraries() -> None:
    for path in python_files("services"):
        relative = str(path.relative_to(REPO))
        if relative in TRANSPORT_MODULES:
            continue
        bad = {n for n in imports_of(path) if n.split(".")[0] in TRANSPORT_LIBRARIES}
        # The CLI is the composition root; it reaches Kafka only through kafka_bus.
        assert not bad, f"{relative} imports {bad}; keep transport code in {TRANSPORT_MODULES}"


def test_environment_is_read_only_in_settings_modules() -> None:
    for path in python_files("services") + python_files("schemas"):
        if path.name == "settings.py":
            continue
        assert "os.environ" not in path.read_text(), f"{path.relative_to(REPO)} reads os.environ"


def test_public_schema_names_are_pinned() -> None:
    assert sorted(schemas.__all__) == sorted(
        name for name in dir(schemas) if not name.startswith("_") and name in schemas.__all__
    )
    expected_events = {
        "UserUttered",
        "BotUttered",
        "ActionExecuted",
        "SlotSet",
        "ActiveLoop",
        "LoopInterrupted",
        "ActionExecutionRejected",
        "ActionFailed",
        "Restarted",
        "AllSlotsReset",
        "UserUtteranceReverted",
        "ActionReverted",
        "ReminderScheduled",
        "ReminderCancelled",
        "FollowupAction",
        "ConversationPaused",
        "ConversationResumed",
        "SessionStarted",
        "EntitiesAdded",
        "DefinePrevUserUtteredFeaturization",
        "AgentAction",
        "UserFeedback",
        "AgentUttered",
        "StoryExported",
    }
    assert expected_events <= set(schemas.__all__)
    assert {"parse_event", "parse_events", "Event", "Topic", "Envelope"} <= set(schemas.__all__)
    assert {cls.__name__ for cls in schemas.EVENT_TYPES.values()} == expected_events
