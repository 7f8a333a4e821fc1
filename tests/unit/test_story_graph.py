"""The story graph of `parley visualize`: merging, rules, slots, forms, checkpoints, rendering."""

from __future__ import annotations

import argparse
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from schemas.project.loader import Project, load_project
from schemas.project.story_graph import StoryGraph, build_story_graph, to_dot
from services.dialogue.visualize import VisualizeError, render
from services.dialogue.visualize_cli import add_visualize_command

SVG_NS = "{http://www.w3.org/2000/svg}"
NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}

DOMAIN = """version: "3.1"
intents: [greet, inform, affirm, deny, goodbye, mood_great, thankyou, a, b, c]
entities: [city]
slots:
  city:
    type: text
    mappings: [{type: from_entity, entity: city}]
forms:
  restaurant_form:
    required_slots: [city]
responses:
  utter_greet: [{text: "Hi"}]
"""


def project(
    tmp_path: Path, stories: str = "", rules: str = "", nlu: str = "", name: str = "bot"
) -> Project:
    root = tmp_path / name
    (root / "data").mkdir(parents=True)
    (root / "config.yml").write_text('version: "3.1"\nlanguage: en\n', encoding="utf-8")
    (root / "domain.yml").write_text(DOMAIN, encoding="utf-8")
    for file, key, body in (
        ("stories", "stories", stories),
        ("rules", "rules", rules),
        ("nlu", "nlu", nlu),
    ):
        if body:
            text = f'version: "3.1"\n{key}:\n{body}'
            (root / "data" / f"{file}.yml").write_text(text, encoding="utf-8")
    return load_project(root)


def labels(graph: StoryGraph, kind: str | None = None) -> list[str]:
    return [n.label for n in graph.nodes if kind is None or n.kind == kind]


def edge_labels(graph: StoryGraph) -> set[tuple[str, str]]:
    return {(graph.node(e.source).label, graph.node(e.target).label) for e in graph.edges}


MOOD = """
- story: happy
  steps:
  - intent: greet
  - action: utter_greet
  - intent: mood_great
  - action: utter_happy
- story: sad
  steps:
  - intent: greet
  - action: utter_greet
  - intent: deny
  - action: utter_goodbye
"""


def test_stories_sharing_a_prefix_share_its_nodes(tmp_path: Path) -> None:
    graph = build_story_graph(project(tmp_path, MOOD))
    assert labels(graph).count("greet") == 1
    assert labels(graph).count("utter_greet") == 1
    greet = next(n for n in graph.nodes if n.label == "greet")
    assert greet.stories == ("story: happy", "story: sad")
    assert greet.origin == "story"
    assert {
        ("START", "greet"),
        ("greet", "utter_greet"),
        ("utter_greet", "mood_great"),
        ("utter_greet", "deny"),
        ("utter_happy", "END"),
        ("utter_goodbye", "END"),
    } <= edge_labels(graph)
    assert [n.kind for n in graph.nodes][:2] == ["start", "end"]
    assert (graph.count("story"), graph.count("rule")) == (2, 0)


CONVERGE = """
- story: from a
  steps:
  - intent: a
  - action: utter_x
  - intent: c
  - action: utter_z
- story: from b
  steps:
  - intent: b
  - action: utter_x
  - intent: c
  - action: utter_z
"""


@pytest.mark.parametrize(
    ("max_history", "xs", "cs", "zs"), [(0, 1, 1, 1), (1, 2, 1, 1), (2, 2, 2, 1), (3, 2, 2, 2)]
)
def test_max_history_decides_which_nodes_merge(
    tmp_path: Path, max_history: int, xs: int, cs: int, zs: int
) -> None:
    graph = build_story_graph(project(tmp_path, CONVERGE), max_history=max_history)
    assert (
        labels(graph).count("utter_x"),
        labels(graph).count("c"),
        labels(graph).count("utter_z"),
    ) == (xs, cs, zs)


def test_negative_max_history_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_history"):
        build_story_graph(project(tmp_path, MOOD), max_history=-1)


RULES = """
- rule: greet at the start
  conversation_start: true
  steps:
  - intent: greet
  - action: utter_greet
- rule: goodbye any time
  steps:
  - intent: goodbye
  - action: utter_goodbye
- rule: submit
  condition:
  - active_loop: restaurant_form
  - slot_was_set:
    - city: Berlin
  steps:
  - action: restaurant_form
  - active_loop: null
  - action: utter_submit
"""


def test_rules_are_drawn_apart_from_stories(tmp_path: Path) -> None:
    graph = build_story_graph(project(tmp_path, MOOD, RULES))
    assert graph.count("rule") == 3
    starts = {n.label: n for n in graph.nodes if n.kind == "rule_start"}
    assert set(starts) == {"RULE", "RULE\nif form restaurant_form active\nif slot city=Berlin"}
    # The conversation-start rule starts at START and runs into the stories' own nodes.
    greet = next(n for n in graph.nodes if n.label == "greet")
    assert greet.origin == "both"
    assert "rule: greet at the start" in greet.stories
    goodbye = next(n for n in graph.nodes if n.label == "goodbye")
    assert goodbye.origin == "rule"
    assert ("RULE", "goodbye") in edge_labels(graph)
    assert "form restaurant_form ended" in labels(graph, "form")
    rule_edges = [e for e in graph.edges if e.origin == "rule"]
    assert rule_edges
    assert all(e.stories[0].startswith("rule: ") for e in rule_edges)
    # A rule is a fragment: it does not end the conversation.
    assert not any(graph.node(e.target).kind == "end" for e in rule_edges)
    dot = to_dot(graph)
    for edge in rule_edges:
        assert re.search(rf'{edge.source} -> {edge.target} \[[^\]]*style="dashed"', dot)
    assert "dashed" in dot.split(f"  {goodbye.id} [", 1)[1].split("\n", 1)[0]


def test_no_rules_draws_the_stories_only(tmp_path: Path) -> None:
    graph = build_story_graph(project(tmp_path, MOOD, RULES), include_rules=False)
    assert graph.count("rule") == 0
    assert all(n.origin == "story" for n in graph.nodes)
    assert not labels(graph, "rule_start")


def test_many_rules_fan_out_from_several_rule_nodes(tmp_path: Path) -> None:
    rules = "".join(
        f"""
- rule: r{i}
  steps:
  - intent: i{i}
  - action: utter_{i}
"""
        for i in range(12)
    )
    graph = build_story_graph(project(tmp_path, rules=rules))
    starts = [n for n in graph.nodes if n.kind == "rule_start"]
    assert len(starts) == 3
    for start in starts:
        assert 1 <= sum(1 for e in graph.edges if e.source == start.id) <= 5


SLOTS_AND_FORMS = """
- story: form
  steps:
  - intent: inform
    entities:
    - city: Berlin
  - slot_was_set:
    - city: Berlin
  - action: restaurant_form
  - active_loop: restaurant_form
  - slot_was_set:
    - city
    - requested_slot: null
  - active_loop: null
  - action: utter_submit
"""


def test_slots_and_forms_are_nodes_of_their_own(tmp_path: Path) -> None:
    graph = build_story_graph(project(tmp_path, SLOTS_AND_FORMS))
    assert labels(graph, "user") == ["inform\ncity=Berlin"]
    assert labels(graph, "slot") == ["slot city=Berlin", "slot city set\nslot requested_slot=null"]
    assert labels(graph, "form") == ["form restaurant_form active", "form restaurant_form ended"]
    assert ("slot city=Berlin", "restaurant_form") in edge_labels(graph)


CHECKPOINTS = """
- story: opening
  steps:
  - intent: greet
  - action: utter_greet
  - checkpoint: greeted
- story: then yes
  steps:
  - checkpoint: greeted
  - intent: affirm
  - action: utter_happy
- story: then no
  steps:
  - checkpoint: greeted
  - intent: deny
  - action: utter_goodbye
"""


def test_checkpoints_join_stories(tmp_path: Path) -> None:
    graph = build_story_graph(project(tmp_path, CHECKPOINTS))
    assert labels(graph, "checkpoint") == ["checkpoint greeted"]
    edges = edge_labels(graph)
    assert {
        ("utter_greet", "checkpoint greeted"),
        ("checkpoint greeted", "affirm"),
        ("checkpoint greeted", "deny"),
    } <= edges
    assert ("utter_greet", "END") not in edges
    assert {("utter_happy", "END"), ("utter_goodbye", "END")} <= edges
    point = next(n for n in graph.nodes if n.kind == "checkpoint")
    assert point.stories == ("story: opening", "story: then yes", "story: then no")


OR = """
- story: either
  steps:
  - intent: greet
  - action: utter_greet
  - or:
    - intent: affirm
    - intent: thankyou
  - action: utter_happy
"""


def test_or_alternatives_are_both_drawn_and_rejoin(tmp_path: Path) -> None:
    graph = build_story_graph(project(tmp_path, OR))
    edges = edge_labels(graph)
    assert {
        ("utter_greet", "affirm"),
        ("utter_greet", "thankyou"),
        ("affirm", "utter_happy"),
        ("thankyou", "utter_happy"),
    } <= edges
    assert labels(graph).count("utter_happy") == 1


NLU = """
- intent: greet
  examples: |
    - hey there
    - hello
- intent: inform
  examples: |
    - I like food
    - I live in [Paris](city)
"""


def test_nlu_labels_user_nodes_with_the_first_example(tmp_path: Path) -> None:
    stories = MOOD + SLOTS_AND_FORMS.replace("story: form", "story: form2", 1)
    plain = build_story_graph(project(tmp_path, stories, nlu=NLU))
    graph = build_story_graph(project(tmp_path, stories, nlu=NLU, name="again"), nlu=True)
    users = labels(graph, "user")
    assert '"hey there"' in users
    assert '"I live in Paris"' in users  # the first example with the step's entities
    assert "mood_great" in users  # no example: the intent
    greet = next(n for n in graph.nodes if n.label == '"hey there"')
    assert greet.detail == "intent greet"
    assert [(n.id, n.kind) for n in graph.nodes] == [(n.id, n.kind) for n in plain.nodes]


def test_two_builds_give_the_same_dot(tmp_path: Path) -> None:
    first = project(tmp_path, CHECKPOINTS + MOOD + OR, RULES)
    second = project(tmp_path, CHECKPOINTS + MOOD + OR, RULES, name="copy")
    dot = to_dot(build_story_graph(first))
    assert dot == to_dot(build_story_graph(second)) == to_dot(build_story_graph(first))
    assert dot.startswith("digraph story_graph {\n  graph [rankdir=TB")


TRICKY = r"""
- story: "quote \"this\" \\ and\nünïcödé ✓"
  steps:
  - user: 'say "hi" \n ü'
  - bot: "line one\nline two → ok"
"""


def test_dot_escapes_quotes_backslashes_newlines_and_unicode(tmp_path: Path) -> None:
    graph = build_story_graph(project(tmp_path, TRICKY))
    assert graph.stories[0].name == 'quote "this" \\ and\nünïcödé ✓'
    user = next(n for n in graph.nodes if n.kind == "user")
    assert user.label == '"say "hi" \\n ü"'
    dot = to_dot(graph)
    assert r'label="\"say \"hi\" \\n ü\""' in dot
    assert "line one line two → ok" in dot
    assert r"story: quote \"this\" \\ and\nünïcödé ✓" in dot
    done = subprocess.run(["dot", "-Tplain"], input=dot.encode(), capture_output=True, check=True)
    assert not done.stderr
    root = ET.fromstring(render(graph, "svg"))
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG_NS}text")]
    assert '"say "hi" \\n ü"' in texts
    titles = ["".join(t.itertext()) for t in root.iter(f"{SVG_NS}title")]
    assert 'user says\nstory: quote "this" \\ and\nünïcödé ✓' in titles


def test_quote_escapes_control_characters() -> None:
    from schemas.project._graph_dot import quote

    assert quote('a"b\\c\nd\r\ne\tf\x00') == '"a\\"b\\\\c\\nd\\ne f "'


def test_svg_is_valid_and_annotated(tmp_path: Path) -> None:
    graph = build_story_graph(project(tmp_path, MOOD, RULES))
    svg = render(graph, "svg")
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    groups = [g for g in root.iter(f"{SVG_NS}g") if g.get("class") == "node"]
    assert len(groups) == len(graph.nodes)
    by_id = {g.get("id"): g for g in groups}
    for node in graph.nodes:
        group = by_id[node.id]
        assert group.get("data-kind") == node.kind
        assert group.get("data-origin") == node.origin
        indexes = [int(i) for i in (group.get("data-stories") or "").split()]
        assert tuple(graph.stories[i].key for i in indexes) == node.stories
        text = " ".join("".join(t.itertext()) for t in group.iter(f"{SVG_NS}text"))
        assert text == node.label.replace("\n", " ")
    edges = [g for g in root.iter(f"{SVG_NS}g") if g.get("class") == "edge"]
    assert len(edges) == len(graph.edges)
    assert {"utter_goodbye", "goodbye", "START", "RULE"} <= set(
        "".join(t.itertext()) for t in root.iter(f"{SVG_NS}text")
    )


def test_png_is_a_png(tmp_path: Path) -> None:
    png = render(build_story_graph(project(tmp_path, MOOD)), "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_html_is_self_contained(tmp_path: Path) -> None:
    graph = build_story_graph(project(tmp_path, MOOD, RULES))
    page = render(graph, "html", title="mood <bot>").decode("utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>mood &lt;bot&gt;</title>" in page
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)
    assert not re.search(r"<link\b", page, re.IGNORECASE)
    assert not re.search(r"@import|url\(", page, re.IGNORECASE)
    urls = set(re.findall(r"https?://[^\s\"'<>)]*", page))
    assert urls <= NAMESPACES, urls - NAMESPACES
    assert "<!DOCTYPE svg" not in page
    assert "<?xml" not in page
    assert page.count("<svg") == 1
    assert 'class="node" data-kind="start"' in page
    for kind in ("story", "rule", "user", "action", "slot", "form", "checkpoint"):
        assert f'class="sw {kind}' in page or f'class="sw line {kind}' in page
    assert page.count('<li class="story" data-story=') == 2
    assert page.count('<li class="rule" data-story=') == 3


def test_render_names_the_graphviz_package_when_dot_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = build_story_graph(project(tmp_path, MOOD))
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(VisualizeError, match="Debian package `graphviz`"):
        render(graph, "svg")


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="parley")
    add_visualize_command(parser.add_subparsers())
    args = parser.parse_args(["visualize", *argv])
    return int(args.func(args, None))


def test_cli_writes_the_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bot = project(tmp_path, MOOD, RULES).root
    out = tmp_path / "out" / "graph.html"
    assert run_cli("--project", str(bot), "--out", str(out)) == 0
    graph = build_story_graph(load_project(bot))
    assert capsys.readouterr().out == (
        f"wrote {out}: {len(graph.nodes)} nodes, {len(graph.edges)} edges (2 stories, 3 rules)\n"
    )
    assert out.read_bytes().startswith(b"<!DOCTYPE html>")
    assert run_cli("--project", str(bot), "--out", str(tmp_path / "g.svg"), "--no-rules") == 0
    assert b"<svg" in (tmp_path / "g.svg").read_bytes()
    assert "(2 stories, 0 rules)" in capsys.readouterr().out
    assert (
        run_cli(
            "--project",
            str(bot),
            "--out",
            str(tmp_path / "g.bin"),
            "--format",
            "png",
            "--nlu",
            "--max-history",
            "0",
        )
        == 0
    )
    assert (tmp_path / "g.bin").read_bytes().startswith(b"\x89PNG")


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_cli_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli("--project", str(tmp_path / "missing")) == 1
    assert one_line_error(capsys) == (
        f"parley visualize: error: the project folder {tmp_path / 'missing'} does not exist\n"
    )
    bot = project(tmp_path, MOOD).root
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert run_cli("--project", str(bot), "--out", str(blocker / "graph.html")) == 1
    err = one_line_error(capsys)
    assert err.startswith(f"parley visualize: error: cannot write {blocker / 'graph.html'}: ")
    assert err.count("\n") == 1
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert run_cli("--project", str(bot), "--out", str(tmp_path / "g.html")) == 1
    assert "`graphviz`" in one_line_error(capsys)


def test_cli_stops_on_project_errors_but_not_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bot = project(tmp_path, MOOD).root
    (bot / "data" / "broken.yml").write_text('version: "9.9"\nstories: []\n', encoding="utf-8")
    assert run_cli("--project", str(bot), "--out", str(tmp_path / "g.html")) == 1
    err = one_line_error(capsys)
    assert "data/broken.yml:1: error: " in err
    assert not (tmp_path / "g.html").exists()
    (bot / "data" / "broken.yml").write_text("stories: []\n", encoding="utf-8")  # a warning
    assert run_cli("--project", str(bot), "--out", str(tmp_path / "g.html")) == 0
