"""`parley visualize` pages open in a real browser (Debian's Chromium, driven by Playwright).

The example bots under ../shared are drawn as HTML, opened from a file:// URL, and checked:
every node drawn, inside the SVG's viewBox, START there, rules drawn dashed, and a click on a
story in the sidebar highlights its nodes. Screenshots go to test-artifacts/visualize/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from schemas.project.loader import load_project
from schemas.project.story_graph import StoryGraph, build_story_graph
from services.dialogue.visualize import render
from tests.support.chromium import chromium

pytestmark = pytest.mark.integration

SHARED = Path(__file__).resolve().parents[3] / "shared"
EXAMPLES = SHARED / "examples" / "rasa"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "visualize"

# Each node's bounding box in the root SVG's user space (the viewBox's coordinates): its
# own box mapped through the transforms of the groups around it.
NODE_BOXES = """() => {
  const svg = document.querySelector("#canvas svg");
  const vb = svg.viewBox.baseVal;
  return Array.from(svg.querySelectorAll("g.node")).map((g) => {
    const box = g.getBBox();
    let m = svg.createSVGMatrix();
    for (let el = g; el && el !== svg; el = el.parentNode) {
      const t = el.transform && el.transform.baseVal.consolidate();
      if (t) m = t.matrix.multiply(m);
    }
    const corner = (x, y) => {
      const p = svg.createSVGPoint(); p.x = x; p.y = y; return p.matrixTransform(m);
    };
    const a = corner(box.x, box.y), b = corner(box.x + box.width, box.y + box.height);
    const seen = g.getBoundingClientRect();
    return {
      id: g.id, kind: g.dataset.kind, width: box.width, height: box.height,
      left: Math.min(a.x, b.x), right: Math.max(a.x, b.x),
      top: Math.min(a.y, b.y), bottom: Math.max(a.y, b.y),
      seenWidth: seen.width, seenHeight: seen.height,
      viewBox: [vb.x, vb.y, vb.width, vb.height],
    };
  });
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def example(bot: str) -> Path:
    root = EXAMPLES / bot
    if not root.is_dir():
        pytest.fail(
            f"{root} is missing: these tests draw the example bots under "
            f"{SHARED} (beside the repository)",
            pytrace=False,
        )
    return root


def open_page(browser: Browser, tmp_path: Path, bot: str) -> tuple[Page, StoryGraph, list[str]]:
    graph = build_story_graph(load_project(example(bot)))
    html = tmp_path / f"{bot}.html"
    html.write_bytes(render(graph, "html", title=f"{bot}: story graph"))
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(html.as_uri(), wait_until="load")
    return page, graph, errors


def check_layout(page: Page, graph: StoryGraph) -> None:
    assert page.locator("#canvas svg g.node").count() == len(graph.nodes)
    assert page.locator("#canvas svg g.edge").count() == len(graph.edges)
    boxes = page.evaluate(NODE_BOXES)
    assert sorted(b["id"] for b in boxes) == sorted(n.id for n in graph.nodes)
    for box in boxes:
        x, y, width, height = box["viewBox"]
        assert min(box["width"], box["height"]) > 0, box
        assert min(box["seenWidth"], box["seenHeight"]) > 0, box
        assert x - 0.5 <= box["left"] <= box["right"] <= x + width + 0.5, box
        assert y - 0.5 <= box["top"] <= box["bottom"] <= y + height + 0.5, box
    start = page.locator('#canvas svg g.node[data-kind="start"]')
    assert start.count() == 1
    assert "START" in (start.text_content() or "")


def check_highlight(page: Page, graph: StoryGraph, kind: str) -> None:
    entry = page.locator(f".stories li.{kind}").first
    key = graph.stories[int(entry.get_attribute("data-story") or "-1")].key
    entry.click()
    assert "hl" in (entry.get_attribute("class") or "").split()
    expected = sorted(n.id for n in graph.nodes if key in n.stories)
    assert expected
    lit = page.eval_on_selector_all("#canvas svg g.node.hl", "nodes => nodes.map((n) => n.id)")
    assert sorted(lit) == expected
    lit_edges = page.locator("#canvas svg g.edge.hl").count()
    assert lit_edges == sum(1 for e in graph.edges if key in e.stories)
    assert "dimmed" in (page.get_attribute("#view", "class") or "")


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_formbot_graph_in_the_browser(browser: Browser, tmp_path: Path) -> None:
    page, graph, errors = open_page(browser, tmp_path, "formbot")
    try:
        check_layout(page, graph)
        assert graph.count("rule") == 6
        rules = page.locator('#canvas svg g[data-origin="rule"]')
        assert rules.count() >= 6
        dashed = page.locator('#canvas svg g.edge[data-origin="rule"] path[stroke-dasharray]')
        assert dashed.count() == sum(1 for e in graph.edges if e.origin == "rule")
        assert page.locator('#canvas svg g.node[data-kind="rule_start"]').count() >= 1
        assert page.locator(".legend li").count() >= 7
        screenshot(page, "formbot.png")
        check_highlight(page, graph, "story")
        check_highlight(page, graph, "rule")
        screenshot(page, "formbot-highlight.png")
        page.keyboard.press("Escape")
        assert page.locator("#canvas svg g.hl").count() == 0
        assert not errors
    finally:
        page.close()


def test_moodbot_graph_in_the_browser(browser: Browser, tmp_path: Path) -> None:
    page, graph, errors = open_page(browser, tmp_path, "moodbot")
    try:
        check_layout(page, graph)
        screenshot(page, "moodbot.png")
        check_highlight(page, graph, "story")
        screenshot(page, "moodbot-highlight.png")
        page.locator("#canvas svg g.node", has_text="utter_cheer_up").click()
        lit = page.eval_on_selector_all(".stories li.hl", "lis => lis.map((li) => li.textContent)")
        assert lit == ["sad path 1", "sad path 2"]
        before = page.get_attribute("#canvas", "style") or ""
        page.mouse.move(700, 450)
        page.mouse.wheel(0, -400)
        after = page.get_attribute("#canvas", "style") or ""
        scale = [float(s) for s in re.findall(r"scale\(([\d.]+)\)", before + after)]
        assert len(scale) == 2
        assert scale[1] > scale[0]
        assert not errors
    finally:
        page.close()
