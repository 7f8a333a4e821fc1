"""Rasa's MemoizationPolicy and AugmentedMemoizationPolicy: exact recall of training turns.

Training remembers, for every action of every story tracker, the last ``max_history`` states
before it (``None``: the whole history, Rasa 3's default) under a key made as Rasa makes it:
the states as JSON with sorted keys and the quotes removed. A key seen with two different actions
is contradictory: it is dropped and never learned again. Prediction looks the current states up
and answers the remembered action with confidence 1.0 (or the intent's confidence, with
``use_nlu_confidence_as_score``), or abstains.

End-to-end story steps (``- user: "I can always go for sushi"`` with no intent) are learned
under text-keyed states, as Rasa's featurizer makes them. Rasa's memoization only ever looks up
the intent state (TED reads the texts); Parley's goes further, in place of TED: when the latest
user text (stripped) is one training saw as an end-to-end text, the text state is looked up
first, then the intent state. A recall by text is an end-to-end prediction: the ensemble prefers
it and marks the user turn as featurized by its text, so later turns see it as training did.

The augmented policy, when that fails, forgets the oldest history turn by turn: it keeps only
the events from the next action on (slots set before are forgotten) and looks again, so an
example learned without those slots still matches.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Self

from schemas.events import ActionExecuted, Event, UserUttered
from schemas.project.domain import Domain
from services.dialogue.policies.base import (
    MEMOIZATION_POLICY_PRIORITY,
    PolicyPrediction,
    SupportedData,
)
from services.dialogue.states import (
    RuleOnlyData,
    State,
    end_to_end_texts,
    feature_key,
    prediction_states,
    training_examples,
)
from services.dialogue.tracker import ACTION_LISTEN, TrackerState, applied_events
from services.dialogue.training_data import TrainingTracker

__all__ = ["LOOKUP_VERSION", "AugmentedMemoizationPolicy", "MemoizationPolicy"]

logger = logging.getLogger(__name__)

LOOKUP_VERSION = 2
"""Version of :meth:`MemoizationPolicy.to_json`'s layout (1: without ``end_to_end_texts``)."""


class MemoizationPolicy:
    """Follows the training stories exactly, for the last ``max_history`` turns."""

    def __init__(
        self,
        *,
        max_history: int | None = None,
        priority: int = MEMOIZATION_POLICY_PRIORITY,
        use_nlu_confidence_as_score: bool = False,
        lookup: Mapping[str, str] | None = None,
        end_to_end_texts: Collection[str] = (),
    ) -> None:
        if max_history is not None and max_history < 1:
            raise ValueError(f"max_history must be 1 or more (or None), not {max_history}")
        self.max_history = max_history
        self._priority = priority
        self.use_nlu_confidence_as_score = use_nlu_confidence_as_score
        self._lookup: dict[str, str] = dict(lookup or {})
        self._end_to_end_texts = frozenset(end_to_end_texts)

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def priority(self) -> int:
        return self._priority

    @property
    def supported_data(self) -> SupportedData:
        return SupportedData.ML_DATA

    @property
    def lookup(self) -> Mapping[str, str]:
        """Lookup key (see :func:`~services.dialogue.states.feature_key`) → action."""
        return MappingProxyType(self._lookup)

    @property
    def end_to_end_texts(self) -> frozenset[str]:
        """The user texts of the end-to-end story steps training saw (stripped)."""
        return self._end_to_end_texts

    def train(self, trackers: Sequence[TrainingTracker], domain: Domain) -> None:
        """Remember every (states, action) example of the story trackers; rules are skipped."""
        lookup: dict[str, str] = {}
        ambiguous: set[str] = set()
        texts: set[str] = set()
        for tracker in self.supported_data.trackers(trackers):
            for states, action in training_examples(
                tracker.events, domain, self.max_history, unpredictable=tracker.unpredictable
            ):
                texts.update(end_to_end_texts(states))
                key = feature_key(states) if states else ""
                if not key or key in ambiguous:
                    continue
                known = lookup.setdefault(key, action)
                if known != action:
                    # Two stories disagree after the same history: learn neither.
                    ambiguous.add(key)
                    del lookup[key]
        self._lookup = lookup
        self._end_to_end_texts = frozenset(texts)
        logger.debug(
            "%s memorized %d examples, %d end-to-end texts", self.name, len(lookup), len(texts)
        )

    def predict(
        self,
        events: Sequence[Event],
        domain: Domain,
        *,
        rule_only: RuleOnlyData | None = None,
        state: TrackerState | None = None,
        initial: TrackerState | None = None,
    ) -> PolicyPrediction:
        """The remembered next action with confidence 1.0, or an abstention.

        By the latest user text first when training saw it in an end-to-end step (an
        end-to-end prediction, confidence 1.0), then by its intent.
        """
        text = _latest_user_text(events, state)
        if text is not None and text in self._end_to_end_texts:
            states = self._states(events, domain, rule_only, initial, use_text=True)
            last = states[-1] if states else None
            if last and last.is_prev_action_listen and last.user and last.user.text == text:
                action = self.recall(states, events, domain, rule_only, use_text=True)
                if action is not None:
                    logger.debug("%s recalled %r by the user's text", self.name, action)
                    return PolicyPrediction(
                        {action: 1.0}, self.name, self.priority, is_end_to_end_prediction=True
                    )
        states = self._states(events, domain, rule_only, initial)
        action = self.recall(states, events, domain, rule_only)
        if action is None:
            return PolicyPrediction.abstain(self.name, self.priority)
        return PolicyPrediction({action: self._score(events)}, self.name, self.priority)

    def recall(
        self,
        states: Sequence[State],
        events: Sequence[Event],
        domain: Domain,
        rule_only: RuleOnlyData | None,
        *,
        use_text: bool = False,
    ) -> str | None:
        """The action remembered for these states (``use_text``: the last user turn by
        its text), if any."""
        return self._recall_states(states)

    def _recall_states(self, states: Sequence[State]) -> str | None:
        return self._lookup.get(feature_key(states)) if states else None

    def _states(
        self,
        events: Sequence[Event],
        domain: Domain,
        rule_only: RuleOnlyData | None,
        initial: TrackerState | None = None,
        *,
        use_text: bool = False,
    ) -> list[State]:
        return prediction_states(
            events,
            domain,
            self.max_history,
            use_text_for_last_user_input=use_text,
            ignore_rule_only_turns=self.supported_data is SupportedData.ML_DATA,
            rule_only=rule_only,
            initial=initial,
        )

    def _score(self, events: Sequence[Event]) -> float:
        if not self.use_nlu_confidence_as_score:
            return 1.0
        latest = next(
            (e for e in reversed(applied_events(events)) if isinstance(e, UserUttered)), None
        )
        intent = latest.parse_data.get("intent") if latest is not None else None
        confidence = intent.get("confidence", 1.0) if isinstance(intent, dict) else 1.0
        return float(confidence) if isinstance(confidence, int | float) else 1.0

    def to_json(self) -> dict[str, Any]:
        """The configuration and the lookup, for the model archive."""
        return {
            "version": LOOKUP_VERSION,
            "policy": self.name,
            "max_history": self.max_history,
            "priority": self.priority,
            "use_nlu_confidence_as_score": self.use_nlu_confidence_as_score,
            "lookup": dict(sorted(self._lookup.items())),
            "end_to_end_texts": sorted(self._end_to_end_texts),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """Read what :meth:`to_json` wrote; ``ValueError`` for anything else."""
        if data.get("version") not in (1, LOOKUP_VERSION):
            raise ValueError(f"unsupported memoization layout version {data.get('version')!r}")
        if data.get("policy") != cls.__name__:
            raise ValueError(f"{cls.__name__} cannot load a {data.get('policy')!r} policy")
        lookup = data.get("lookup")
        if not isinstance(lookup, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in lookup.items()
        ):
            raise ValueError("memoization lookup must map strings to action names")
        max_history = data.get("max_history")
        if max_history is not None and not isinstance(max_history, int):
            raise ValueError(f"max_history must be an integer or null, not {max_history!r}")
        texts = data.get("end_to_end_texts", [])
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError("end_to_end_texts must be a list of strings")
        return cls(
            max_history=max_history,
            priority=int(data.get("priority", MEMOIZATION_POLICY_PRIORITY)),
            use_nlu_confidence_as_score=bool(data.get("use_nlu_confidence_as_score", False)),
            lookup=lookup,
            end_to_end_texts=texts,
        )


class AugmentedMemoizationPolicy(MemoizationPolicy):
    """Memoization that forgets old turns (and the slots they set) until an example matches."""

    def recall(
        self,
        states: Sequence[State],
        events: Sequence[Event],
        domain: Domain,
        rule_only: RuleOnlyData | None,
        *,
        use_text: bool = False,
    ) -> str | None:
        found = self._recall_states(states)
        if found is not None:
            return found
        old_states = list(states)
        truncated = _from_action(_trim_to_max_history(events, self.max_history), again=False)
        while truncated is not None:
            new_states = self._states(truncated, domain, rule_only, use_text=use_text)
            if new_states != old_states:
                found = self._recall_states(new_states)
                if found is not None:
                    return found
                old_states = new_states
            truncated = _from_action(truncated, again=True)
        return None


def _latest_user_text(events: Sequence[Event], state: TrackerState | None) -> str | None:
    """The latest user message's text, stripped (None without one)."""
    if state is not None:
        text = (state.latest_message or {}).get("text")
    else:
        latest = next((e for e in reversed(events) if isinstance(e, UserUttered)), None)
        text = latest.text if latest is not None else None
    return text.strip() if isinstance(text, str) and text.strip() else None


def _trim_to_max_history(events: Sequence[Event], max_history: int | None) -> list[Event]:
    """The applied events from the ``action_listen`` just past ``max_history`` actions back.

    Cutting at a listen keeps the latest user message in the trimmed history.
    """
    applied = applied_events(events)
    if not max_history:
        return applied
    actions = 0
    for count, event in enumerate(reversed(applied), start=1):
        if isinstance(event, ActionExecuted):
            actions += 1
            if actions > max_history and event.name == ACTION_LISTEN:
                return applied[-count:]
    return applied


def _from_action(events: Sequence[Event], *, again: bool) -> list[Event] | None:
    """The applied events from the first (``again``: the second) action on; None if none."""
    applied = applied_events(events)
    starts = [i for i, e in enumerate(applied) if isinstance(e, ActionExecuted)][:2]
    index = 1 if again else 0
    if len(starts) <= index:
        return None
    return applied[starts[index] :] or None
