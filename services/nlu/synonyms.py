"""Rasa's `EntitySynonymMapper`: entity values mapped to their canonical synonym value.

Reproduced from Rasa 3.x (`rasa/nlu/extractors/entity_synonyms.py`):

- the lookup key is `str(value).lower()`, so non-string values (numbers, booleans) are mapped
  too, as Rasa's `str(...)` wrapper does;
- every canonical value also maps to itself, lower-cased (`AUSTRIA` → `Austria`), the
  self-reference Rasa adds while training;
- a mapped entity gets its new `value` and `"EntitySynonymMapper"` appended to `processors`
  (created when absent), even when the value was already canonical, as in Rasa.

Unlike Rasa, `apply` does not mutate its input: it returns new entity dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from schemas.project.nlu import NluData

PROCESSOR_NAME = "EntitySynonymMapper"


class SynonymMapper:
    """Maps entity values, case-insensitively, to canonical values."""

    def __init__(self, synonyms: Mapping[str, str]) -> None:
        """`synonyms`: surface form → canonical value (keys are lower-cased here)."""
        mapping = {str(key).lower(): str(value) for key, value in synonyms.items()}
        for canonical in list(mapping.values()):
            mapping.setdefault(canonical.lower(), canonical)
        self._synonyms = mapping

    @classmethod
    def from_nlu(cls, nlu: NluData) -> SynonymMapper:
        """The mapper Rasa trains from the synonyms and the annotated examples."""
        return cls(nlu.synonym_map())

    def __bool__(self) -> bool:
        return bool(self._synonyms)

    def __len__(self) -> int:
        return len(self._synonyms)

    def canonical(self, value: Any) -> str | None:
        """The canonical value for `value`, or None when it has no synonym."""
        return self._synonyms.get(str(value).lower())

    def apply(self, entities: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Copies of `entities` with synonym values replaced and the processor recorded."""
        out: list[dict[str, Any]] = []
        for entity in entities:
            copy = dict(entity)
            canonical = self.canonical(copy.get("value"))
            if "value" in copy and canonical is not None:
                copy["value"] = canonical
                copy["processors"] = [*copy.get("processors", []), PROCESSOR_NAME]
            out.append(copy)
        return out
