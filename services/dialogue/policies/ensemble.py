"""The policy ensemble: every policy predicts, one prediction wins (Rasa 3.x's default ensemble).

Before choosing, an action the conversation just rejected (``action_execution_rejected`` is the
latest action event) gets confidence 0 in every prediction. The best prediction is then, in
order of importance (Rasa's ``DefaultPolicyPredictionEnsemble``):

1. a "no user" prediction (a loop's happy path) over any other;
2. when there is none, an end-to-end prediction (made from the user's text) over the rest;
3. the higher maximum confidence;
4. the higher policy priority; the first policy listed wins a complete tie.

The winner carries every policy's mandatory ``events``, its own ``optional_events`` and, when
the conversation ends with a user turn, ``DefinePrevUserUtteredFeaturization`` saying whether
the text was used. The next action is the winner's most confident one; when no action has any
confidence it is ``action_listen`` (Rasa's action index 0), with confidence 0.

``EnsemblePredictor`` adapts the ensemble to the dialogue engine's ``Predictor`` protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Self

from schemas.events import (
    ActionExecuted,
    ActionExecutionRejected,
    DefinePrevUserUtteredFeaturization,
    Event,
)
from schemas.project.config import Component, Config
from schemas.project.domain import Domain
from services.dialogue.engine import Prediction
from services.dialogue.policies.base import Policy, PolicyPrediction, SupportedData
from services.dialogue.policies.memoization import AugmentedMemoizationPolicy, MemoizationPolicy
from services.dialogue.policies.rule import RulePolicy
from services.dialogue.states import RuleOnlyData
from services.dialogue.tracker import ACTION_LISTEN, TrackerState, replay, slot_defaults
from services.dialogue.training_data import TrainingTracker

__all__ = [
    "ENSEMBLE_VERSION",
    "EnsemblePredictor",
    "PolicyEnsemble",
    "best_prediction_index",
    "exclude_rejected_action",
]

logger = logging.getLogger(__name__)

ENSEMBLE_VERSION = 1
"""Version of :meth:`PolicyEnsemble.to_json`'s layout."""

_RULE_OPTIONS = {
    "priority": int,
    "core_fallback_threshold": float,
    "core_fallback_action_name": str,
    "enable_fallback_prediction": bool,
    "restrict_rules": bool,
    "check_for_contradictions": bool,
    "use_nlu_confidence_as_score": bool,
}
_MEMOIZATION_OPTIONS = {"priority": int, "max_history": int, "use_nlu_confidence_as_score": bool}

_Loader = Callable[[Mapping[str, Any]], Policy]
_LOADERS: dict[str, _Loader] = {
    "RulePolicy": RulePolicy.from_json,
    "MemoizationPolicy": MemoizationPolicy.from_json,
    "AugmentedMemoizationPolicy": AugmentedMemoizationPolicy.from_json,
}


def exclude_rejected_action(
    events: Sequence[Event], predictions: Sequence[PolicyPrediction]
) -> list[PolicyPrediction]:
    """The predictions, with confidence 0 for the action the conversation just rejected."""
    latest = next(
        (e for e in reversed(events) if isinstance(e, ActionExecuted | ActionExecutionRejected)),
        None,
    )
    if not isinstance(latest, ActionExecutionRejected):
        return list(predictions)
    logger.debug("'%s' was rejected: its confidence is 0 in every prediction", latest.name)
    return [
        replace(p, probabilities={**p.probabilities, latest.name: 0.0})
        if latest.name in p.probabilities
        else p
        for p in predictions
    ]


def best_prediction_index(predictions: Sequence[PolicyPrediction]) -> int:
    """The index of the winning prediction (the first one of equally good ones)."""
    if not predictions:
        raise ValueError("the ensemble needs at least one prediction")
    no_user_present = any(p.is_no_user_prediction for p in predictions)

    def scores(p: PolicyPrediction) -> tuple[bool, bool, float, int]:
        return (
            p.is_no_user_prediction,
            not no_user_present and p.is_end_to_end_prediction,
            p.max_confidence,
            p.policy_priority,
        )

    return max(range(len(predictions)), key=lambda i: scores(predictions[i]))


class PolicyEnsemble:
    """The configured policies, trained together and asked together."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        if not policies:
            raise ValueError("a policy ensemble needs at least one policy")
        self.policies = list(policies)
        priorities: dict[int, list[str]] = {}
        for policy in self.policies:
            priorities.setdefault(policy.priority, []).append(policy.name)
        for priority, names in priorities.items():
            if len(names) > 1:
                logger.warning(
                    "policies %s share priority %d: give each policy its own priority",
                    names,
                    priority,
                )
        if not any(isinstance(p, RulePolicy) for p in self.policies):
            logger.warning(
                "no RulePolicy is configured: /restart and /back will not trigger "
                "action_restart and action_back"
            )

    @classmethod
    def from_config(cls, config: Config) -> Self:
        """The policies ``config.yml`` lists that Parley implements, with their options.

        Without any listed, Rasa 3's defaults that Parley implements: RulePolicy and
        MemoizationPolicy (Rasa also adds UnexpecTEDIntentPolicy and TEDPolicy).

        TEDPolicy is not implemented. A config that lists it and nothing else Parley builds
        (a TED-only bot) gets that same default ensemble, the memoization with TED's
        ``max_history``, so the bot follows its stories (end-to-end steps included) exactly
        but does not generalise beyond them as TED would.
        """
        policies: list[Policy] = []
        for component in config.policies:
            policy = _policy_from(component)
            if policy is not None:
                policies.append(policy)
        ted = next((c for c in config.policies if _short(c.name) == "TEDPolicy"), None)
        if not config.policies:
            policies = [RulePolicy(), MemoizationPolicy()]
        elif not policies and ted is not None:
            max_history = _options(ted, {"max_history": int}).get("max_history")
            logger.warning(
                "TEDPolicy is not implemented by Parley: RulePolicy and MemoizationPolicy "
                "stand in for it (the stories are followed exactly, not generalised)"
            )
            policies = [RulePolicy(), MemoizationPolicy(max_history=max_history)]
        if not policies:
            raise ValueError(
                "none of the configured policies is implemented by Parley: "
                + ", ".join(c.name for c in config.policies)
            )
        return cls(policies)

    @property
    def rule_only_data(self) -> RuleOnlyData | None:
        """The first rule policy's rule-only slots and loops, shared with the other policies."""
        rule = next((p for p in self.policies if isinstance(p, RulePolicy)), None)
        return None if rule is None else rule.rule_only_data

    def train(self, trackers: Sequence[TrainingTracker], domain: Domain) -> None:
        """Train each policy on the trackers of the kind it supports."""
        if not trackers:
            logger.info("no training trackers: the policies stay untrained")
            return
        has_rules = any(t.is_rule for t in trackers)
        takes_rules = any(p.supported_data is not SupportedData.ML_DATA for p in self.policies)
        if takes_rules and not has_rules:
            logger.warning("a rule policy is configured but there are no rules")
        elif has_rules and not takes_rules:
            logger.warning("there are rules but no policy learns from rules (add RulePolicy)")
        for policy in self.policies:
            policy.train(policy.supported_data.trackers(trackers), domain)

    def predictions(
        self,
        events: Sequence[Event],
        domain: Domain,
        state: TrackerState | None = None,
        initial: TrackerState | None = None,
    ) -> list[PolicyPrediction]:
        """Every policy's own prediction, in the order the policies are listed."""
        rule_only = self.rule_only_data
        return [
            p.predict(events, domain, rule_only=rule_only, state=state, initial=initial)
            for p in self.policies
        ]

    def predict(
        self,
        events: Sequence[Event],
        domain: Domain,
        *,
        state: TrackerState | None = None,
        initial: TrackerState | None = None,
    ) -> PolicyPrediction:
        """The winning prediction, carrying the events to apply before its action."""
        predictions = exclude_rejected_action(
            events, self.predictions(events, domain, state, initial)
        )
        best_index = best_prediction_index(predictions)
        best = predictions[best_index]
        chosen: list[Event] = [e for p in predictions for e in p.events]
        chosen += best.optional_events
        if state is None:
            state = replay(events, slot_defaults(domain))
        if state.latest_action_name == ACTION_LISTEN:
            chosen.append(
                DefinePrevUserUtteredFeaturization(
                    use_text_for_featurization=best.is_end_to_end_prediction
                )
            )
        logger.debug("predicted the next action with %s", best.policy_name)
        return replace(best, events=tuple(chosen), optional_events=(), action_metadata=None)

    def as_predictor(self) -> EnsemblePredictor:
        return EnsemblePredictor(self)

    def to_json(self) -> dict[str, Any]:
        """Every trained policy as ``{"class": name, "data": its JSON}``, in order."""
        return {
            "version": ENSEMBLE_VERSION,
            "policies": [{"class": p.name, "data": p.to_json()} for p in self.policies],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """Read what :meth:`to_json` wrote; ``ValueError`` for anything else."""
        if data.get("version") != ENSEMBLE_VERSION:
            raise ValueError(f"unsupported ensemble layout version {data.get('version')!r}")
        items = data.get("policies")
        if not isinstance(items, list) or not items:
            raise ValueError("an ensemble needs a non-empty 'policies' list")
        policies: list[Policy] = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("data"), dict):
                raise ValueError("each ensemble policy needs a 'class' and a 'data' object")
            loader = _LOADERS.get(str(item.get("class")))
            if loader is None:
                raise ValueError(f"unknown policy class {item.get('class')!r}")
            policies.append(loader(item["data"]))
        return cls(policies)


class EnsemblePredictor:
    """The ensemble as the dialogue engine's ``Predictor``."""

    def __init__(self, ensemble: PolicyEnsemble) -> None:
        self.ensemble = ensemble

    def predict(
        self,
        events: Sequence[Event],
        state: TrackerState,
        domain: Domain,
        initial: TrackerState | None = None,
    ) -> Prediction:
        best = self.ensemble.predict(events, domain, state=state, initial=initial)
        action = best.action
        if action is None:
            # No action has any confidence: Rasa's argmax falls on action_listen.
            return Prediction(ACTION_LISTEN, 0.0, best.policy_name, best.events, False)
        return Prediction(
            action,
            best.probabilities[action],
            best.policy_name,
            best.events,
            best.hide_rule_turn,
        )


def _options(component: Component, known: Mapping[str, type]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, value in component.options.items():
        kind = known.get(key)
        if kind is None:
            logger.info("%s: option %r is not used by Parley", component.name, key)
            continue
        if key == "max_history" and value is None:
            options[key] = None
        elif kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            options[key] = float(value)
        elif isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            options[key] = value
        else:
            raise ValueError(
                f"{component.name}: option {key!r} should be {kind.__name__}, not {value!r}"
            )
    return options


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _policy_from(component: Component) -> Policy | None:
    short = _short(component.name)
    if short == "RulePolicy":
        return RulePolicy(**_options(component, _RULE_OPTIONS))
    if short == "MemoizationPolicy":
        return MemoizationPolicy(**_options(component, _MEMOIZATION_OPTIONS))
    if short == "AugmentedMemoizationPolicy":
        return AugmentedMemoizationPolicy(**_options(component, _MEMOIZATION_OPTIONS))
    logger.warning("policy %s is not implemented by Parley: it is skipped", component.name)
    return None
