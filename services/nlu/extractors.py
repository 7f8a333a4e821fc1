"""Rasa's `RegexEntityExtractor`: entities from the project's regexes and lookup tables.

Reproduced from Rasa 3.x (`rasa/nlu/extractors/regex_entity_extractor.py`,
`rasa/nlu/utils/pattern_utils.py`):

- options `case_sensitive` (default False: every pattern runs with `re.IGNORECASE`, regexes
  included), `use_regexes`, `use_lookup_tables`, `use_word_boundaries` (all default True);
- only regexes and tables named after an entity of the training data are used (`entities`);
- each regex pattern runs on its own (`re.finditer`), and each lookup table is one pattern;
- output dicts are `entity`, `start`, `end`, `value` (the matched text) and
  `extractor: "RegexEntityExtractor"`, with no `confidence_entity`, as in Rasa;
- matches of different patterns may overlap; all are kept.

Where Parley differs, on purpose:

- a lookup table compiles to one trie-shaped regex (`New(?: York)?`): thousands of elements
  match in time independent of their number, and the longest element wins where several
  match at one place (Rasa's alternation takes the first listed);
- word boundaries are `(?<!\\w)`/`(?!\\w)` rather than `\\b`, which is the same for elements
  that start and end with a word character and lets `$5` or `U.S.` match at all;
- empty lookup elements and empty regex matches yield nothing (Rasa emits empty entities),
  and a span found twice for one entity (by two patterns) is reported once;
- entities come out sorted by `start`, then `end` (pattern order on a tie).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.project.nlu import LookupTable, NluData, RegexFeature

EXTRACTOR_NAME = "RegexEntityExtractor"
_END = ""  # trie key marking the end of an element; real keys are single characters


@dataclass(frozen=True, slots=True)
class _Pattern:
    entity: str
    regex: re.Pattern[str]


class RegexEntityExtractor:
    """Finds entities with the project's regexes and lookup tables, named after entities."""

    def __init__(
        self,
        regexes: Iterable[RegexFeature] = (),
        lookups: Iterable[LookupTable] = (),
        *,
        entities: Collection[str] | None = None,
        case_sensitive: bool = False,
        use_regexes: bool = True,
        use_lookup_tables: bool = True,
        use_word_boundaries: bool = True,
    ) -> None:
        """Compile the patterns; `entities` (None: all names) limits which names are used."""
        flags = 0 if case_sensitive else re.IGNORECASE
        patterns: list[_Pattern] = []
        if use_regexes:
            for feature in regexes:
                if entities is not None and feature.name not in entities:
                    continue
                for raw in feature.patterns:
                    try:
                        patterns.append(_Pattern(feature.name, re.compile(raw, flags)))
                    except re.error as exc:
                        raise ValueError(f"regex {feature.name!r} ({raw!r}): {exc}") from exc
        if use_lookup_tables:
            for table in lookups:
                if entities is not None and table.name not in entities:
                    continue
                source = lookup_pattern(table.elements, case_sensitive, use_word_boundaries)
                if source is not None:
                    patterns.append(_Pattern(table.name, re.compile(source, flags)))
        self._patterns = tuple(patterns)

    @classmethod
    def from_project(
        cls, nlu: NluData, options: Mapping[str, Any] | None = None
    ) -> RegexEntityExtractor:
        """The extractor Rasa trains: only names that are entities of the examples."""
        options = options or {}
        entities = {ent.entity for example in nlu.examples for ent in example.entities}
        return cls(
            nlu.regexes,
            nlu.lookups,
            entities=entities,
            case_sensitive=bool(options.get("case_sensitive", False)),
            use_regexes=bool(options.get("use_regexes", True)),
            use_lookup_tables=bool(options.get("use_lookup_tables", True)),
            use_word_boundaries=bool(options.get("use_word_boundaries", True)),
        )

    @property
    def entity_names(self) -> frozenset[str]:
        """The entities this extractor can find."""
        return frozenset(p.entity for p in self._patterns)

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def extract(self, text: str) -> list[dict[str, Any]]:
        """Rasa entity dicts for every match in `text`, sorted by start, then end."""
        seen: set[tuple[str, int, int]] = set()
        found: list[dict[str, Any]] = []
        for pattern in self._patterns:
            for match in pattern.regex.finditer(text):
                start, end = match.span()
                key = (pattern.entity, start, end)
                if start == end or key in seen:
                    continue
                seen.add(key)
                found.append(
                    {
                        "entity": pattern.entity,
                        "start": start,
                        "end": end,
                        "value": text[start:end],
                        "extractor": EXTRACTOR_NAME,
                    }
                )
        found.sort(key=lambda e: (e["start"], e["end"]))
        return found


def lookup_pattern(
    elements: Iterable[str], case_sensitive: bool = False, word_boundaries: bool = True
) -> str | None:
    """One regex matching any element, longest first; None when there are no elements."""
    trie: dict[str, Any] = {}
    for element in elements:
        if not element:
            continue
        node = trie
        for char in element:
            node = node.setdefault(char if case_sensitive else _fold(char), {})
        node[_END] = {}
    if not trie:
        return None
    body = _trie_regex(trie)
    return rf"(?<!\w)(?:{body})(?!\w)" if word_boundaries else f"(?:{body})"


def _fold(char: str) -> str:
    # Merge case variants into one branch so the greedy trie still prefers the longest
    # element under IGNORECASE; multi-character foldings (ß → ss) keep the character.
    for candidate in (char.casefold(), char.lower()):
        if len(candidate) == 1:
            return candidate
    return char


def _trie_regex(node: dict[str, Any]) -> str:
    # Iterative over single-child chains so long elements do not deepen the recursion.
    parts: list[str] = []
    while True:
        branches = sorted(key for key in node if key != _END)
        optional = _END in node
        if len(branches) == 1 and not optional:
            parts.append(re.escape(branches[0]))
            node = node[branches[0]]
            continue
        if branches:
            alternatives = "|".join(re.escape(k) + _trie_regex(node[k]) for k in branches)
            parts.append(f"(?:{alternatives})" + ("?" if optional else ""))
        return "".join(parts)
