"""The topics of the bus: names, keys, payloads, producers and consumers.

Handlers address topics by their logical `Topic`; the transport adds the configured
prefix (`parley.` by default) to get the physical Kafka topic name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from schemas import envelopes as env


class Topic(StrEnum):
    """Logical topic names, one inbox per service plus the shared logs."""

    NLU = "nlu"
    DIALOGUE = "dialogue"
    ACTIONS = "actions"
    SCHEDULER = "scheduler"
    OUTBOUND = "outbound"
    EVENTS = "events"
    DEAD_LETTERS = "dead-letters"

    def physical(self, prefix: str = "parley") -> str:
        """The Kafka topic name under `prefix` (an empty prefix means no prefix)."""
        return f"{prefix}.{self.value}" if prefix else self.value


@dataclass(frozen=True)
class TopicSpec:
    """What a topic carries and who reads and writes it."""

    topic: Topic
    description: str
    payload: Any  # a model or an annotated union of models
    payload_name: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    key: str = "conversation id (UTF-8)"


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        Topic.NLU,
        "User messages from the channels, waiting for NLU.",
        env.UserMessage,
        "UserMessage",
        producers=("gateway",),
        consumers=("nlu",),
    ),
    TopicSpec(
        Topic.DIALOGUE,
        "The dialogue worker's inbox: parsed user messages, action results, "
        "external triggers (reminders, trigger_intent, handoff timers) and console commands.",
        env.DialogueInput,
        "DialogueInput",
        producers=("nlu", "actions", "scheduler", "gateway"),
        consumers=("dialogue",),
    ),
    TopicSpec(
        Topic.ACTIONS,
        "Custom action requests carrying Rasa's webhook payload.",
        env.ActionRequest,
        "ActionRequest",
        producers=("dialogue",),
        consumers=("actions",),
    ),
    TopicSpec(
        Topic.SCHEDULER,
        "Reminders to schedule or cancel and human-handoff timers.",
        env.SchedulerInput,
        "SchedulerInput",
        producers=("dialogue",),
        consumers=("scheduler",),
    ),
    TopicSpec(
        Topic.OUTBOUND,
        "Bot and agent messages for the user's channel, with a turn-complete marker.",
        env.OutboundMessage,
        "OutboundMessage",
        producers=("dialogue",),
        consumers=("gateway",),
    ),
    TopicSpec(
        Topic.EVENTS,
        "Append-only log of every tracker event, as Rasa's Kafka event broker publishes it: "
        '`{"sender_id": ..., **event}`.',
        None,  # filled below: the Rasa event-broker record
        "EventRecord",
        producers=("dialogue",),
        consumers=("gateway (console)", "analytics", "your consumers"),
        key="sender id (UTF-8)",
    ),
    TopicSpec(
        Topic.DEAD_LETTERS,
        "Messages a consumer could not decode or handle, with the reason, source topic, "
        "partition, offset and the original bytes.",
        env.DeadLetter,
        "DeadLetter",
        producers=("every consumer",),
        consumers=("operators",),
        key="the original key",
    ),
)

TOPIC_SPECS: dict[Topic, TopicSpec] = {spec.topic: spec for spec in TOPICS}
