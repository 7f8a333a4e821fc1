"""RegexEntityExtractor: entities from regexes and lookup tables."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.project.nlu import EntityAnnotation, Example, LookupTable, NluData, RegexFeature
from schemas.project.problems import Source
from services.nlu.extractors import RegexEntityExtractor, lookup_pattern

SOURCE = Source(Path("data/nlu.yml"), 1)


def regex(name: str, *patterns: str) -> RegexFeature:
    return RegexFeature(name, patterns, SOURCE)


def lookup(name: str, *elements: str) -> LookupTable:
    return LookupTable(name, elements, SOURCE)


def spans(found: list[dict[str, Any]]) -> list[tuple[str, str, int, int]]:
    return [(e["entity"], e["value"], e["start"], e["end"]) for e in found]


CITIES = lookup("city", "Berlin", "New York", "New", "São Paulo", "Москва", "東京", "U.S.", "$5")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fly to berlin", [("city", "berlin", 7, 13)]),
        ("FLY TO BERLIN!", [("city", "BERLIN", 7, 13)]),
        ("Berlin and New York", [("city", "Berlin", 0, 6), ("city", "New York", 11, 19)]),
        ("New Yorker", [("city", "New", 0, 3)]),
        ("Berliner", []),
        ("West-Berlin", [("city", "Berlin", 5, 11)]),
        ("são paulo", [("city", "são paulo", 0, 9)]),
        ("в москва.", [("city", "москва", 2, 8)]),
        ("行く東京", []),  # word boundaries: no boundary between 行く and 東京
        ("東京 です", [("city", "東京", 0, 2)]),
        ("the U.S. are", [("city", "U.S.", 4, 8)]),
        ("pay $5 now", [("city", "$5", 4, 6)]),
        ("pay $50 now", []),
        ("😀Berlin😀", [("city", "Berlin", 1, 7)]),
        ("", []),
    ],
)
def test_lookup_tables(text: str, expected: list[tuple[str, str, int, int]]) -> None:
    assert spans(RegexEntityExtractor(lookups=[CITIES]).extract(text)) == expected


def test_lookup_without_word_boundaries() -> None:
    extractor = RegexEntityExtractor(lookups=[CITIES], use_word_boundaries=False)
    assert spans(extractor.extract("行く東京へ")) == [("city", "東京", 2, 4)]
    assert spans(extractor.extract("Berliner")) == [("city", "Berlin", 0, 6)]


def test_case_sensitive_option() -> None:
    extractor = RegexEntityExtractor([regex("code", "[A-Z]{3}")], [CITIES], case_sensitive=True)
    assert spans(extractor.extract("berlin abc")) == []
    assert spans(extractor.extract("Berlin ABC")) == [
        ("city", "Berlin", 0, 6),
        ("code", "ABC", 7, 10),
    ]


def test_regexes_are_case_insensitive_by_default() -> None:
    extractor = RegexEntityExtractor([regex("code", "[A-Z]{3}")])
    assert spans(extractor.extract("abc")) == [("code", "abc", 0, 3)]


def test_regexes_each_pattern_separately() -> None:
    extractor = RegexEntityExtractor(
        [regex("zip", r"\b\d{5}\b", r"\b\d{5}-\d{4}\b"), regex("number", r"\d+")]
    )
    found = spans(extractor.extract("zip 12345-6789"))
    assert found == [
        ("zip", "12345", 4, 9),
        ("number", "12345", 4, 9),
        ("zip", "12345-6789", 4, 14),
        ("number", "6789", 10, 14),
    ]


def test_overlapping_regex_and_lookup_matches_are_all_kept() -> None:
    extractor = RegexEntityExtractor([regex("city", r"new \w+"), regex("word", r"\w+")], [CITIES])
    found = spans(extractor.extract("New York"))
    assert sorted(found) == sorted(
        [
            ("city", "New York", 0, 8),  # once, though the regex and the table both find it
            ("word", "New", 0, 3),
            ("word", "York", 4, 8),
        ]
    )
    assert [e[2] for e in found] == sorted(e[2] for e in found)


def test_empty_matches_and_empty_elements_yield_nothing() -> None:
    extractor = RegexEntityExtractor([regex("x", "a*")], [lookup("y", "", "")])
    assert extractor.extract("bbb") == []
    assert lookup_pattern(["", ""]) is None


def test_output_shape() -> None:
    [entity] = RegexEntityExtractor(lookups=[CITIES]).extract("to Berlin")
    assert entity == {
        "entity": "city",
        "start": 3,
        "end": 9,
        "value": "Berlin",
        "extractor": "RegexEntityExtractor",
    }
    json.dumps(entity)


def test_switches_and_entity_filter() -> None:
    regexes, lookups = [regex("code", r"\d+")], [CITIES]
    assert spans(RegexEntityExtractor(regexes, lookups, use_regexes=False).extract("Berlin 1")) == [
        ("city", "Berlin", 0, 6)
    ]
    assert spans(
        RegexEntityExtractor(regexes, lookups, use_lookup_tables=False).extract("Berlin 1")
    ) == [("code", "1", 7, 8)]
    only_code = RegexEntityExtractor(regexes, lookups, entities={"code"})
    assert only_code.entity_names == {"code"}
    assert not RegexEntityExtractor(regexes, lookups, entities=set())


def test_from_project_uses_only_names_of_example_entities() -> None:
    nlu = NluData(
        examples=[
            Example(
                "to Berlin",
                "inform",
                SOURCE,
                (EntityAnnotation("city", 3, 9, "Berlin", "Berlin"),),
            )
        ],
        regexes=[regex("zipcode", r"\d{5}")],
        lookups=[CITIES],
    )
    extractor = RegexEntityExtractor.from_project(nlu, {"case_sensitive": True})
    assert extractor.entity_names == {"city"}
    assert extractor.extract("berlin 12345") == []
    assert spans(extractor.extract("Berlin 12345")) == [("city", "Berlin", 0, 6)]


def test_invalid_regex_is_reported_at_construction() -> None:
    with pytest.raises(ValueError, match="zip"):
        RegexEntityExtractor([regex("zip", "(")])


@pytest.mark.parametrize(
    ("elements", "text", "expected"),
    [
        (["a", "ab", "abc"], "abc", ["abc"]),
        (["abc", "ab", "a"], "ab abc a", ["ab", "abc", "a"]),
        (["Straße"], "STRASSE straße", ["straße"]),
        (["Apple", "apple pie"], "APPLE PIE", ["APPLE PIE"]),
        (["a.b", "a+b"], "a.b a+b axb", ["a.b", "a+b"]),
        (["(x)", "[y]", "\\z"], "(x) [y] \\z", ["(x)", "[y]", "\\z"]),
    ],
)
def test_lookup_pattern_longest_first(elements: list[str], text: str, expected: list[str]) -> None:
    source = lookup_pattern(elements)
    assert source is not None
    assert [m.group() for m in re.finditer(source, text, re.IGNORECASE)] == expected


@given(
    elements=st.lists(st.text(alphabet="abAB c.", min_size=1, max_size=6), min_size=1, max_size=8),
    text=st.text(alphabet="abAB c.", max_size=30),
)
def test_trie_pattern_matches_like_a_longest_first_alternation(
    elements: list[str], text: str
) -> None:
    source = lookup_pattern(elements, case_sensitive=True, word_boundaries=False)
    assert source is not None
    alternation = "|".join(re.escape(e) for e in sorted(set(elements), key=len, reverse=True))
    assert [m.span() for m in re.finditer(source, text)] == [
        m.span() for m in re.finditer(alternation, text)
    ]


def test_thousands_of_lookup_elements_are_fast() -> None:
    elements = [f"city{i} town" for i in range(20000)] + ["New York"]
    extractor = RegexEntityExtractor(lookups=[lookup("city", *elements)])
    text = ("I want to go from CITY17 town to new york and back " * 200).strip()
    start = time.perf_counter()
    found = extractor.extract(text)
    assert time.perf_counter() - start < 1.0
    assert len(found) == 400
    assert found[0]["value"] == "CITY17 town"
