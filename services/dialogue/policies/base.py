"""What every dialogue policy offers, and what it answers, so policies can form an ensemble.

A policy trains on training trackers (the ones its ``supported_data`` takes), predicts from a
conversation's events and the domain, and saves what it learned as JSON for the model archive.
The ensemble compares predictions by confidence, then by ``policy_priority`` (Rasa's
constants below), and applies the winner's ``optional_events``; ``events`` apply whoever wins.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas.events import Event
from schemas.project.domain import Domain
from services.dialogue.states import RuleOnlyData
from services.dialogue.tracker import TrackerState
from services.dialogue.training_data import TrainingTracker

__all__ = [
    "DEFAULT_POLICY_PRIORITY",
    "MEMOIZATION_POLICY_PRIORITY",
    "RULE_POLICY_PRIORITY",
    "UNLIKELY_INTENT_POLICY_PRIORITY",
    "Policy",
    "PolicyPrediction",
    "SupportedData",
]

# rasa/core/constants.py: learned policies (TED) 1, UnexpecTED 2, memoization 3, rules 6.
DEFAULT_POLICY_PRIORITY = 1
UNLIKELY_INTENT_POLICY_PRIORITY = 2
MEMOIZATION_POLICY_PRIORITY = 3
RULE_POLICY_PRIORITY = 6


class SupportedData(enum.Enum):
    """Which training trackers a policy learns from (Rasa's ``SupportedData``)."""

    ML_DATA = "ml"
    RULE_DATA = "rule"
    ML_AND_RULE_DATA = "ml_and_rule"

    def trackers(self, trackers: Sequence[TrainingTracker]) -> list[TrainingTracker]:
        """The trackers of this kind: stories for ML data, rules for rule data."""
        if self is SupportedData.ML_DATA:
            return [t for t in trackers if not t.is_rule]
        if self is SupportedData.RULE_DATA:
            return [t for t in trackers if t.is_rule]
        return list(trackers)


@dataclass(frozen=True)
class PolicyPrediction:
    """A policy's answer: a confidence per action name (absent = 0.0), and what goes with it.

    ``events`` are applied whichever policy wins, ``optional_events`` only if this one does.
    """

    probabilities: Mapping[str, float]
    policy_name: str | None
    policy_priority: int = DEFAULT_POLICY_PRIORITY
    events: tuple[Event, ...] = ()
    optional_events: tuple[Event, ...] = ()
    is_end_to_end_prediction: bool = False
    is_no_user_prediction: bool = False
    hide_rule_turn: bool = False
    action_metadata: Mapping[str, Any] | None = None
    diagnostic_data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def abstain(cls, policy_name: str, policy_priority: int) -> PolicyPrediction:
        """No action has any confidence: the policy has nothing to say."""
        return cls({}, policy_name, policy_priority)

    @property
    def action(self) -> str | None:
        """The action with the highest confidence above 0 (the first such, for ties)."""
        best = max(self.probabilities.items(), key=lambda item: item[1], default=None)
        return best[0] if best is not None and best[1] > 0 else None

    @property
    def max_confidence(self) -> float:
        return max(self.probabilities.values(), default=0.0)


class Policy(Protocol):
    """A dialogue policy: memoization, rules, or a learned one such as TED."""

    @property
    def name(self) -> str:
        """The policy's class name in Rasa (`MemoizationPolicy`), as predictions carry it."""
        ...

    @property
    def priority(self) -> int: ...

    @property
    def supported_data(self) -> SupportedData: ...

    def train(self, trackers: Sequence[TrainingTracker], domain: Domain) -> None:
        """Learn from the trackers (the policy picks those its ``supported_data`` takes)."""
        ...

    def predict(
        self,
        events: Sequence[Event],
        domain: Domain,
        *,
        rule_only: RuleOnlyData | None = None,
        state: TrackerState | None = None,
        initial: TrackerState | None = None,
    ) -> PolicyPrediction:
        """The next action after ``events``; ``rule_only`` comes from the rule policy;
        ``state``, when given, is the tracker after ``events`` (saves replaying them);
        ``initial`` the tracker before them, when they are only the recent events."""
        ...

    def to_json(self) -> dict[str, Any]:
        """The trained policy as JSON; the class's ``from_json`` reads it back."""
        ...
