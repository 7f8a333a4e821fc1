"""Drawing a story graph with Graphviz: SVG, PNG, or a self-contained interactive HTML page."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from typing import Literal

from schemas.project.story_graph import StoryGraph, to_dot, tooltip
from services.common.errors import ParleyError
from services.dialogue._visualize_assets import CSS, JS, LEGEND, PAGE

Format = Literal["html", "svg", "png"]
FORMATS: tuple[Format, ...] = ("html", "svg", "png")
DOT_TIMEOUT = 120.0
# Graphviz opens every node and edge group with its id and class, then its <title>.
GROUP = re.compile(r'<g id="(?P<id>[ne]\d+)" class="(?P<cls>node|edge)">\s*<title>[^<]*</title>')
PROLOGUE = re.compile(r"\A.*?(?=<svg[\s>])", re.DOTALL)
COMMENT = re.compile(r"<!--.*?-->\s*", re.DOTALL)


class VisualizeError(ParleyError):
    """The graph could not be drawn (Graphviz missing, failing or too slow)."""


def render(graph: StoryGraph, fmt: Format, *, title: str = "Story graph") -> bytes:
    """The graph drawn as `fmt`: an SVG or PNG file, or an HTML page that opens offline."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "png":
        return run_dot(to_dot(graph), "png")
    svg = annotate_svg(run_dot(to_dot(graph), "svg").decode("utf-8"), graph)
    if fmt == "svg":
        return svg.encode("utf-8")
    return page(graph, svg, title).encode("utf-8")


def run_dot(source: str, fmt: Literal["svg", "png"], timeout: float = DOT_TIMEOUT) -> bytes:
    """What `dot -T<fmt>` makes of the DOT source."""
    dot = shutil.which("dot")
    if dot is None:
        raise VisualizeError(
            "Graphviz's `dot` is not installed: install the Debian package `graphviz` "
            "(sudo apt-get install graphviz)"
        )
    try:
        done = subprocess.run(
            [dot, f"-T{fmt}"],
            input=source.encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise VisualizeError(
            f"`dot` did not finish in {timeout:.0f} s; the graph is too "
            "large: try --no-rules or a smaller --max-history"
        ) from None
    except OSError as exc:
        raise VisualizeError(f"cannot run {dot}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise VisualizeError(
            f"`dot -T{fmt}` failed (exit {done.returncode}): "
            + (message[0] if message else "no message")
        )
    return done.stdout


def annotate_svg(svg: str, graph: StoryGraph) -> str:
    """Give every node and edge group `data-kind`, `data-origin` and `data-stories` (the
    indexes of `graph.stories`), and a readable `<title>` tooltip."""
    index = {ref.key: str(i) for i, ref in enumerate(graph.stories)}
    items = {node.id: node for node in graph.nodes} | {edge.id: edge for edge in graph.edges}
    seen: set[str] = set()

    def attributes(match: re.Match[str]) -> str:
        item = items.get(match["id"])
        if item is None:
            return match[0]
        seen.add(item.id)
        kind = getattr(item, "kind", "edge")
        stories = " ".join(index[key] for key in item.stories)
        return (
            f'<g id="{item.id}" class="{match["cls"]}" data-kind="{kind}" '
            f'data-origin="{item.origin}" data-stories="{stories}">\n'
            f"<title>{html.escape(tooltip(item), quote=False)}</title>"
        )

    out = GROUP.sub(attributes, svg)
    if len(seen) != len(items):
        raise VisualizeError(
            f"`dot` drew {len(seen)} of the graph's {len(items)} nodes and "
            "edges; is Graphviz too old?"
        )
    return out


def page(graph: StoryGraph, svg: str, title: str) -> str:
    """The HTML page: title, legend, the list of stories and rules, and the inline SVG."""
    inline = COMMENT.sub("", PROLOGUE.sub("", svg, count=1)).strip()
    legend = "\n".join(
        f'<li><span class="sw {css}"></span>{html.escape(text)}</li>' for css, text in LEGEND
    )
    lists = []
    for kind, heading in (("story", "Stories"), ("rule", "Rules")):
        entries = [
            f'<li class="{kind}" data-story="{i}" title="{html.escape(ref.key)}">'
            f"{html.escape(ref.name)}</li>"
            for i, ref in enumerate(graph.stories)
            if ref.kind == kind
        ]
        if entries:
            lists.append(
                f"<section><h2>{heading} ({len(entries)})</h2>\n"
                f'<ul class="stories">\n' + "\n".join(entries) + "\n</ul>\n</section>"
            )
    summary = (
        f"{len(graph.nodes)} nodes · {len(graph.edges)} edges · "
        f"{graph.count('story')} stories · {graph.count('rule')} rules"
    )
    return PAGE.format(
        title=html.escape(title),
        summary=summary,
        legend=legend,
        lists="\n".join(lists),
        svg=inline,
        css=CSS.strip(),
        js=JS.strip(),
    )
