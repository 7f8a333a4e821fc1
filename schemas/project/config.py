"""`config.yml`: the pipeline and policies, mapped onto what Parley implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.project._read import FileReader, line_of
from schemas.project._yaml import LineDict
from schemas.project.handoff import HandoffConfig, read_handoff
from schemas.project.problems import Source

# What each Rasa component becomes in Parley. Tokenizers and featurizers are subsumed by the
# transformer encoder (its WordPiece tokenizer and contextual embeddings); None = not built.
PIPELINE: dict[str, str | None] = {
    "WhitespaceTokenizer": "the encoder's WordPiece tokenizer",
    "JiebaTokenizer": "the encoder's WordPiece tokenizer",
    "MitieTokenizer": "the encoder's WordPiece tokenizer",
    "SpacyTokenizer": "the encoder's WordPiece tokenizer",
    "CountVectorsFeaturizer": "the transformer encoder",
    "LexicalSyntacticFeaturizer": "the transformer encoder",
    "RegexFeaturizer": "the transformer encoder (regexes extract entities)",
    "LanguageModelFeaturizer": "the transformer encoder",
    "ConveRTFeaturizer": "the transformer encoder",
    "SpacyFeaturizer": "the transformer encoder",
    "MitieFeaturizer": "the transformer encoder",
    "SpacyNLP": "the transformer encoder",
    "MitieNLP": "the transformer encoder",
    "ParleyTransformer": "Parley's joint intent + entity transformer (its settings)",
    "DIETClassifier": "Parley's joint intent + entity transformer",
    "KeywordIntentClassifier": "Parley's joint intent + entity transformer",
    "SklearnIntentClassifier": "Parley's joint intent + entity transformer",
    "LogisticRegressionClassifier": "Parley's joint intent + entity transformer",
    "MitieIntentClassifier": "Parley's joint intent + entity transformer",
    "CRFEntityExtractor": "Parley's joint intent + entity transformer",
    "MitieEntityExtractor": "Parley's joint intent + entity transformer",
    "RegexEntityExtractor": "regex and lookup-table entities",
    "EntitySynonymMapper": "synonyms mapped to their value",
    "FallbackClassifier": "nlu_fallback below the threshold",
    "DucklingEntityExtractor": None,
    "SpacyEntityExtractor": None,
    "ResponseSelector": None,
}
POLICIES: dict[str, str | None] = {
    "RulePolicy": "rules",
    "MemoizationPolicy": "memoization",
    "AugmentedMemoizationPolicy": "augmented memoization",
    # Not built. A config with TEDPolicy and no other policy Parley builds gets RulePolicy and
    # MemoizationPolicy in its place (services/dialogue/policies/ensemble.py): the stories,
    # end-to-end steps included, are followed exactly; nothing generalises as TED would.
    "TEDPolicy": None,
    "UnexpecTEDIntentPolicy": None,
}
CONFIG_KEYS = ("version", "recipe", "language", "pipeline", "policies", "assistant_id")


@dataclass(frozen=True, slots=True)
class Component:
    """One pipeline component or policy as configured."""

    name: str
    source: Source
    options: dict[str, Any] = field(default_factory=dict)
    parley: str | None = None


@dataclass(frozen=True)
class Config:
    """The parts of `config.yml` Parley reads."""

    language: str = "en"
    pipeline: tuple[Component, ...] = ()
    policies: tuple[Component, ...] = ()
    assistant_id: str | None = None
    source: Source | None = None

    def option(self, component: str, key: str, default: Any) -> Any:
        for item in (*self.pipeline, *self.policies):
            if item.name == component and key in item.options:
                return item.options[key]
        return default

    @property
    def max_history(self) -> int:
        for name in ("AugmentedMemoizationPolicy", "MemoizationPolicy", "TEDPolicy"):
            value = self.option(name, "max_history", None)
            if isinstance(value, int):
                return value
        return 5

    @property
    def fallback_threshold(self) -> float:
        return float(self.option("FallbackClassifier", "threshold", 0.3))

    @property
    def core_fallback_threshold(self) -> float:
        return float(self.option("RulePolicy", "core_fallback_threshold", 0.3))

    def not_implemented(self) -> list[Component]:
        return [c for c in (*self.pipeline, *self.policies) if c.parley is None]


def read_config(data: LineDict, reader: FileReader) -> Config:
    reader.unknown_keys(data, CONFIG_KEYS, "config.yml")
    language = data.get("language", "en")
    if not isinstance(language, str):
        reader.error(data.line_of("language"), "language should be a language code like `en`")
        language = "en"
    config = Config(
        language=language,
        pipeline=tuple(_components(data, "pipeline", PIPELINE, reader)),
        policies=tuple(_components(data, "policies", POLICIES, reader)),
        assistant_id=data.get("assistant_id"),
        source=reader.source(1),
    )
    missing = config.not_implemented()
    if missing:
        names = ", ".join(f"{c.name} (line {c.source.line})" for c in missing)
        reader.warning(
            missing[0].source.line,
            f"Parley does not implement {len(missing)} configured component(s): "
            f"{names}; they are not used",
            "remove them, or keep them for Rasa; Parley's equivalents are listed "
            "in docs/bot-projects.md",
            code="unsupported-component",
        )
    return config


def _components(
    data: LineDict, key: str, known: dict[str, str | None], reader: FileReader
) -> list[Component]:
    if data.get(key) is None:
        return []
    items = reader.sequence(data[key], data.line_of(key), f"`{key}`")
    out = []
    for index, item in enumerate(items or ()):
        item_line = line_of(items, index)
        spec = reader.mapping(item, item_line, f"an item of `{key}`")
        if spec is None:
            continue
        name = spec.get("name")
        if not isinstance(name, str):
            reader.error(item_line, f"an item of `{key}` needs a `name`")
            continue
        options = {k: v for k, v in spec.items() if k != "name"}
        short = name.rsplit(".", 1)[-1]
        out.append(Component(name, reader.source(item_line), options, known.get(short)))
    return out


@dataclass(frozen=True)
class Endpoints:
    """`endpoints.yml`: where the action server is, Parley's `handoff:` settings, and the
    rest as written."""

    action_url: str | None = None
    actions_module: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    handoff: HandoffConfig = field(default_factory=HandoffConfig)


def read_endpoints(data: LineDict, reader: FileReader) -> Endpoints:
    action = data.get("action_endpoint")
    url = module = None
    if action is not None:
        spec = reader.mapping(action, data.line_of("action_endpoint"), "`action_endpoint`")
        if spec is not None:
            url = spec.get("url")
            module = spec.get("actions_module")
            if url is None and module is None:
                reader.warning(
                    spec.line,
                    "`action_endpoint` has neither `url` nor `actions_module`",
                    "give the action server's webhook URL",
                )
    return Endpoints(url, module, dict(data), read_handoff(data, reader))
