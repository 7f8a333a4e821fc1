"""EntitySynonymMapper: entity values mapped to canonical values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas.project.nlu import EntityAnnotation, Example, NluData, Synonym
from schemas.project.problems import Source
from services.nlu.synonyms import PROCESSOR_NAME, SynonymMapper

SOURCE = Source(Path("data/nlu.yml"), 1)
MAPPER = SynonymMapper(
    {"NYC": "New York", "big apple": "New York", "1": "one", "питер": "Санкт-Петербург"}
)


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("NYC", "New York"),
        ("nyc", "New York"),
        ("Big Apple", "New York"),
        ("new york", "New York"),  # the canonical value maps to itself
        ("NEW YORK", "New York"),
        ("New York", "New York"),
        (1, "one"),  # Rasa maps str(value)
        ("Питер", "Санкт-Петербург"),
        ("санкт-петербург", "Санкт-Петербург"),
        ("Berlin", None),
        ("", None),
        (None, None),
        (["nyc"], None),
    ],
)
def test_canonical(value: Any, canonical: str | None) -> None:
    assert MAPPER.canonical(value) == canonical


def test_apply_maps_values_and_records_the_processor() -> None:
    entities: list[dict[str, Any]] = [
        {"entity": "city", "value": "nyc", "start": 0, "end": 3},
        {"entity": "city", "value": "Berlin", "start": 4, "end": 10},
        {"entity": "city", "value": "New York", "processors": ["Other"]},
        {"entity": "city"},
    ]
    out = MAPPER.apply(entities)
    assert out == [
        {
            "entity": "city",
            "value": "New York",
            "start": 0,
            "end": 3,
            "processors": [PROCESSOR_NAME],
        },
        {"entity": "city", "value": "Berlin", "start": 4, "end": 10},
        {"entity": "city", "value": "New York", "processors": ["Other", PROCESSOR_NAME]},
        {"entity": "city"},
    ]
    # The input is untouched.
    assert entities[0]["value"] == "nyc"
    assert "processors" not in entities[0]
    assert entities[2]["processors"] == ["Other"]


def test_an_explicit_mapping_beats_a_self_reference() -> None:
    mapper = SynonymMapper({"austria": "Österreich", "at": "Austria"})
    assert mapper.canonical("AUSTRIA") == "Österreich"
    assert mapper.canonical("österreich") == "Österreich"


def test_from_nlu_uses_synonyms_and_annotated_values() -> None:
    nlu = NluData(
        examples=[
            Example(
                "to NY",
                "inform",
                SOURCE,
                (EntityAnnotation("city", 3, 5, "NY", "New York"),),
            )
        ],
        synonyms=[Synonym("credit", ("credit card", "CC"), SOURCE)],
    )
    mapper = SynonymMapper.from_nlu(nlu)
    assert mapper.canonical("ny") == "New York"
    assert mapper.canonical("cc") == "credit"
    assert mapper.canonical("CREDIT") == "credit"
    assert len(mapper) == 5
    assert not SynonymMapper({})
