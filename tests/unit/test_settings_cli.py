"""Settings are read once from the environment; the CLI lists what exists."""

from __future__ import annotations

import pytest

from schemas.topics import Topic
from services import cli
from services.common.settings import BusSettings


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-1:9092,broker-2:9092")
    monkeypatch.setenv("PARLEY_TOPIC_PREFIX", "acme")
    monkeypatch.setenv("PARLEY_PARTITIONS", "12")
    monkeypatch.setenv("PARLEY_TOPIC_PARTITIONS", '{"dialogue": 24}')
    settings = BusSettings()
    assert settings.kafka_bootstrap_servers == "broker-1:9092,broker-2:9092"
    assert settings.physical(Topic.DEAD_LETTERS) == "acme.dead-letters"
    assert settings.partitions_of(Topic.DIALOGUE) == 24
    assert settings.partitions_of(Topic.NLU) == 12


def test_an_empty_prefix_means_bare_topic_names() -> None:
    assert BusSettings(topic_prefix="").physical(Topic.NLU) == "nlu"


def test_invalid_settings_say_which(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_PARTITIONS", "0")
    with pytest.raises(ValueError, match="partitions"):
        BusSettings()


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "topics" in out
    assert "schemas" in out


def test_topics_list_prints_every_topic(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_TOPIC_PREFIX", "acme")
    assert cli.main(["topics", "list"]) == 0
    out = capsys.readouterr().out
    for topic in Topic:
        assert f"acme.{topic.value}" in out


def test_unreachable_kafka_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert cli.main(["topics", "create"]) == 1
    err = capsys.readouterr().err
    assert "ERROR parley [- -] cannot reach Kafka at 127.0.0.1:1" in err
    assert "make services-up" in err
    assert "Traceback" not in err
