"""The Rasa 3.x project loader: formats read as Rasa reads them, every value located."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.project._yaml import LineDict, load_yaml
from schemas.project.loader import load_project, read_nlu_file, read_project
from schemas.project.nlu import AnnotationError, parse_example
from schemas.project.problems import Level, ProjectError, ProjectFileError
from schemas.project.stories import ActionStep, CheckpointStep, LoopStep, OrStep, SlotStep, UserStep


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CONFIG = """
language: en
pipeline:
  - name: WhitespaceTokenizer
  - name: DIETClassifier
    epochs: 100
  - name: FallbackClassifier
    threshold: 0.7
  - name: DucklingEntityExtractor
policies:
  - name: MemoizationPolicy
    max_history: 3
  - name: RulePolicy
    core_fallback_threshold: 0.4
  - name: TEDPolicy
"""


def test_yaml_follows_1_2_like_rasa(tmp_path: Path) -> None:
    path = write(tmp_path, {"a.yml": "a: yes\nb: no\nc: 10:30\nd: 010\ne: on\nf: true\ng: ~\n"})
    data = load_yaml(path / "a.yml")
    assert data == {"a": "yes", "b": "no", "c": "10:30", "d": 10, "e": "on", "f": True, "g": None}


def test_yaml_values_know_their_lines(tmp_path: Path) -> None:
    text = "version: '3.1'\nnlu:\n- intent: greet\n  examples: |\n    - hi\n"
    data = load_yaml(write(tmp_path, {"a.yml": text}) / "a.yml")
    assert isinstance(data, LineDict)
    assert data.line_of("nlu") == 2
    assert data["nlu"].line_of(0) == 3
    assert data["nlu"][0].line_of("examples") == 4


def test_yaml_errors_are_located(tmp_path: Path) -> None:
    path = write(tmp_path, {"a.yml": "a:\n  - b\n - c\n"}) / "a.yml"
    with pytest.raises(ProjectFileError) as info:
        load_yaml(path)
    assert info.value.problem.source.line == 3
    assert "invalid YAML" in info.value.problem.message


def test_non_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "a.yml"
    path.write_bytes("a: 1\nb: café\n".encode("latin-1"))
    with pytest.raises(ProjectFileError) as info:
        load_yaml(path)
    assert info.value.problem.source.line == 2
    assert "not UTF-8" in info.value.problem.message


@pytest.mark.parametrize(
    ("raw", "text", "entities"),
    [
        ("fly to [Berlin](city)", "fly to Berlin", [("city", 7, 13, "Berlin", None, None)]),
        ("a [NYC](city:New York) trip", "a NYC trip", [("city", 2, 5, "New York", None, None)]),
        (
            'from [Rome]{"entity": "city", "role": "from", "value": "Roma"} to [Oslo](city)',
            "from Rome to Oslo",
            [("city", 5, 9, "Roma", "from", None), ("city", 13, 17, "Oslo", None, None)],
        ),
        (
            '[2]{"entity": "number", "group": "1"} [pizzas]{"entity": "food", "group": "1"}',
            "2 pizzas",
            [("number", 0, 1, "2", None, "1"), ("food", 2, 8, "pizzas", None, "1")],
        ),
        (
            'the [big apple][{"entity": "city"}, {"entity": "nickname", "value": "nyc"}]',
            "the big apple",
            [("city", 4, 13, "big apple", None, None), ("nickname", 4, 13, "nyc", None, None)],
        ),
        ("no entities [here", "no entities [here", []),
    ],
)
def test_annotations(raw: str, text: str, entities: list[tuple[object, ...]]) -> None:
    plain, found = parse_example(raw)
    assert plain == text
    assert [(e.entity, e.start, e.end, e.value, e.role, e.group) for e in found] == entities
    for e in found:
        assert plain[e.start : e.end] == e.text


def test_bad_annotation_json_is_an_error() -> None:
    with pytest.raises(AnnotationError, match="not valid JSON"):
        parse_example('[x]{"entity": }')


def test_a_whole_project(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "config.yml": CONFIG,
            "domain/base.yml": """version: "3.1"
intents:
  - greet
  - inform:
      use_entities: [city]
  - chitchat:
      use_entities: []
entities:
  - city:
      roles: [from, to]
slots:
  city:
    type: text
    mappings:
      - type: from_entity
        entity: city
        role: to
        conditions:
          - active_loop: trip_form
            requested_slot: city
  mood:
    type: categorical
    values: [happy, sad]
    initial_value: happy
    mappings:
      - type: custom
session_config:
  session_expiration_time: 30
  carry_over_slots_to_new_session: false
""",
            "domain/responses.yml": """version: "3.1"
responses:
  utter_greet:
    - text: "Hi {city}!"
      condition:
        - type: slot
          name: mood
          value: happy
    - text: Hello
      channel: slack
  utter_chitchat/ask_name:
    - text: I am Parley
forms:
  trip_form:
    required_slots: [city]
actions:
  - action_book
  - action_check:
      send_domain: true
""",
            "data/nlu/basics.yml": """version: "3.1"
nlu:
- intent: greet
  metadata:
    source: test
  examples: |
    - hi
    - hello there
- intent: inform
  examples:
    - text: 'to [Paris]{"entity": "city", "role": "to"}'
      metadata:
        sentiment: neutral
- intent: chitchat/ask_name
  examples: |
    - what is your name
- synonym: New York
  examples: |
    - NYC
    - the big apple
- regex: zip
  examples: |
    - \\d{5}
- lookup: city
  examples: |
    - Paris
    - Rome
""",
            "data/deep/stories.yml": """version: "2.0"
stories:
- story: trip
  steps:
  - intent: greet
  - action: utter_greet
  - or:
    - intent: inform
      entities:
      - city: Paris
    - slot_was_set:
      - city: Paris
  - action: trip_form
  - active_loop: trip_form
  - slot_was_set:
    - city
  - active_loop: null
  - checkpoint: booked
- story: after
  steps:
  - checkpoint: booked
  - action: action_book
""",
            "data/rules.yml": """version: "3.1"
rules:
- rule: greet at start
  conversation_start: true
  steps:
  - intent: greet
  - action: utter_greet
- rule: chitchat
  condition:
  - active_loop: trip_form
  wait_for_user_input: false
  steps:
  - intent: chitchat
  - action: utter_chitchat
""",
            "tests/test_trip.yml": """version: "3.1"
stories:
- story: test trip
  steps:
  - user: |
      to [Paris]{"entity": "city", "role": "to"}
    intent: inform
  - action: trip_form
""",
            "endpoints.yml": "action_endpoint:\n  url: http://localhost:5055/webhook\n",
            "credentials.yml": "rest:\n",
        },
    )
    project, problems = read_project(tmp_path)
    errors = [p for p in problems if p.level is Level.ERROR]
    assert errors == []

    config = project.config
    assert config.max_history == 3
    assert config.fallback_threshold == 0.7
    assert config.core_fallback_threshold == 0.4
    assert [c.name for c in config.not_implemented()] == ["DucklingEntityExtractor", "TEDPolicy"]
    [warning] = [p for p in problems if "does not implement" in p.message]
    assert "DucklingEntityExtractor (line 9), TEDPolicy (line 15)" in warning.message

    domain = project.domain
    assert set(domain.intents) == {"greet", "inform", "chitchat"}
    assert domain.intents["inform"].use_entities == ("city",)
    assert domain.intents["chitchat"].use_entities == ()
    assert domain.entities["city"].roles == ("from", "to")
    city = domain.slots["city"]
    assert city.mappings[0].role == "to"
    assert city.mappings[0].conditions[0].requested_slot == "city"
    assert city.source.line == 12
    assert domain.slots["mood"].initial_value == "happy"
    assert domain.session_config.session_expiration_time == 30
    assert domain.session_config.carry_over_slots_to_new_session is False
    greet = domain.responses["utter_greet"]
    assert greet.variations[0].condition[0].name == "mood"
    assert greet.variations[1].channel == "slack"
    assert domain.actions["action_check"].send_domain is True
    assert domain.forms["trip_form"].required_slots == ("city",)
    assert domain.is_known_action("utter_chitchat")  # answers the retrieval intent
    assert domain.is_known_slot("requested_slot")  # Rasa adds it when there are forms

    nlu = project.nlu
    assert [e.text for e in nlu.examples if e.intent == "greet"] == ["hi", "hello there"]
    assert nlu.examples[0].metadata == {"source": "test"}
    assert nlu.examples[0].source.line == 7  # the line of "- hi"
    inform = next(e for e in nlu.examples if e.intent == "inform")
    assert inform.metadata == {"sentiment": "neutral"}
    assert inform.entities[0].role == "to"
    assert next(e for e in nlu.examples if e.retrieval_intent == "chitchat").intent == (
        "chitchat/ask_name"
    )
    assert nlu.synonym_map()["the big apple"] == "New York"
    assert nlu.regexes[0].patterns == ("\\d{5}",)
    assert nlu.lookups[0].elements == ("Paris", "Rome")

    trip, after = project.stories
    assert isinstance(trip.steps[0], UserStep)
    assert trip.steps[0].intent == "greet"
    assert isinstance(trip.steps[2], OrStep)
    assert isinstance(trip.steps[2].alternatives[1], SlotStep)
    assert isinstance(trip.steps[4], LoopStep)
    assert trip.steps[5] == SlotStep(trip.steps[5].source, (("city", None),), frozenset({"city"}))
    assert isinstance(trip.steps[-1], CheckpointStep)
    assert isinstance(after.steps[1], ActionStep)
    first_rule, second_rule = project.rules
    assert first_rule.conversation_start is True
    assert isinstance(second_rule.condition[0], LoopStep)
    assert second_rule.wait_for_user_input is False
    [test_story] = project.test_stories
    user = test_story.steps[0]
    assert isinstance(user, UserStep)
    assert user.text == "to Paris"
    assert user.annotations[0].role == "to"
    assert project.endpoints.action_url == "http://localhost:5055/webhook"
    assert "rest" in project.credentials


def test_duplicates_across_domain_files_are_reported(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "config.yml": "language: en\n",
            "domain/a.yml": 'version: "3.1"\nintents:\n  - greet\n',
            "domain/b.yml": 'version: "3.1"\nintents:\n  - bye\n  - greet\n',
        },
    )
    project, problems = read_project(tmp_path)
    assert set(project.domain.intents) == {"greet", "bye"}
    [duplicate] = [p for p in problems if "defined twice" in p.message]
    assert duplicate.source.file.name == "b.yml"
    assert duplicate.source.line == 4
    assert "a.yml:3" in duplicate.message


def test_load_project_raises_with_every_error(tmp_path: Path) -> None:
    write(tmp_path, {"domain.yml": 'version: "3.1"\nintents: greet\n'})
    with pytest.raises(ProjectError) as info:
        load_project(tmp_path)
    text = str(info.value)
    assert "config.yml is missing" in text
    assert "domain.yml:2: error: `intents` should be a list, not a string" in text


def test_standalone_nlu_file(tmp_path: Path) -> None:
    path = (
        write(
            tmp_path,
            {
                "train.yml": 'version: "3.1"\nnlu:\n- intent: a\n  examples: |\n'
                "    - one [x](e)\n    - two\n"
            },
        )
        / "train.yml"
    )
    data, problems = read_nlu_file(path)
    assert problems == []
    assert [(e.text, e.intent) for e in data.examples] == [("one x", "a"), ("two", "a")]


def test_responses_uttered_by_the_projects_actions_count_as_used(tmp_path: Path) -> None:
    from schemas.project.validation import validate

    write(
        tmp_path,
        {
            "config.yml": "language: en\n",
            "domain.yml": 'version: "3.1"\nintents:\n  - greet\nresponses:\n'
            "  utter_hi:\n    - text: Hi {name}\n  utter_unused:\n    - text: never\n",
            "data/nlu.yml": 'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hi\n',
            "actions/actions.py": 'dispatcher.utter_message(response="utter_hi", name=user)\n',
        },
    )
    project, problems = read_project(tmp_path)
    problems += validate(project)
    assert project.responses_in_actions == {"utter_hi"}
    messages = [p.message for p in problems]
    assert "response `utter_unused` is never used in stories or rules" in messages
    assert not any("utter_hi" in m for m in messages)
