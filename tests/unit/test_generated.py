"""The committed contract files are what the models generate, and the docs name every topic."""

from __future__ import annotations

from pathlib import Path

import yaml

from schemas import generate
from schemas.topics import TOPICS

REPO = Path(__file__).resolve().parents[2]


def test_generated_files_are_up_to_date() -> None:
    stale = generate.stale_files()
    assert not stale, f"run `make schemas`: out of date: {stale}"


def test_asyncapi_document_has_every_topic_with_its_payload() -> None:
    document = yaml.safe_load((generate.GENERATED / "asyncapi.yaml").read_text())
    assert document["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {spec.topic.physical() for spec in TOPICS}
    for spec in TOPICS:
        assert spec.payload_name in document["components"]["messages"]
    schemas = document["components"]["schemas"]
    for name in ("UserUttered", "ReminderScheduled", "DeadLetter", "EventRecord", "AnyEvent"):
        assert name in schemas


def test_architecture_doc_names_every_topic() -> None:
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    for spec in TOPICS:
        assert f"`{spec.topic.physical()}`" in text, spec.topic
