"""Dialogue policies: each predicts the next action; an ensemble picks among them."""

from services.dialogue.policies.base import (
    DEFAULT_POLICY_PRIORITY,
    MEMOIZATION_POLICY_PRIORITY,
    RULE_POLICY_PRIORITY,
    UNLIKELY_INTENT_POLICY_PRIORITY,
    Policy,
    PolicyPrediction,
    SupportedData,
)
from services.dialogue.policies.ensemble import EnsemblePredictor, PolicyEnsemble
from services.dialogue.policies.memoization import AugmentedMemoizationPolicy, MemoizationPolicy
from services.dialogue.policies.rule import InvalidRule, RulePolicy

__all__ = [
    "DEFAULT_POLICY_PRIORITY",
    "MEMOIZATION_POLICY_PRIORITY",
    "RULE_POLICY_PRIORITY",
    "UNLIKELY_INTENT_POLICY_PRIORITY",
    "AugmentedMemoizationPolicy",
    "EnsemblePredictor",
    "InvalidRule",
    "MemoizationPolicy",
    "Policy",
    "PolicyEnsemble",
    "PolicyPrediction",
    "RulePolicy",
    "SupportedData",
]
