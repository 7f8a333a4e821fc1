"""The page around a story graph's SVG: inline CSS and JS, nothing loaded from anywhere."""

from __future__ import annotations

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body>
<header>
<h1>{title}</h1>
<span class="summary">{summary}</span>
<span class="tools">
<button type="button" id="zoom-in" title="zoom in">+</button>
<button type="button" id="zoom-out" title="zoom out">&minus;</button>
<button type="button" id="zoom-fit" title="fit to the window">fit</button>
</span>
</header>
<aside id="side">
<section class="legend">
<h2>Legend</h2>
<ul>
{legend}
</ul>
</section>
{lists}
<p class="hint">Drag to pan, wheel to zoom. Click a story, or a node for the stories through
it; Esc or a click on the background clears.</p>
</aside>
<main id="view">
<div id="canvas">
{svg}
</div>
</main>
<script>
{js}
</script>
</body>
</html>
"""

LEGEND = (
    ("line story", "story step"),
    ("line rule", "rule step (dashed)"),
    ("start", "START / END"),
    ("rule_start", "RULE start (+ condition)"),
    ("user", "user: intent / text"),
    ("action", "bot action"),
    ("slot", "slot was set"),
    ("form", "form (active_loop)"),
    ("checkpoint", "checkpoint"),
)

CSS = """
* { box-sizing: border-box; }
html, body { height: 100%; margin: 0; }
body {
  display: grid; grid-template-columns: 270px 1fr; grid-template-rows: auto 1fr;
  grid-template-areas: "head head" "side view";
  font: 13px/1.35 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
  color: #0f172a; background: #f8fafc;
}
header {
  grid-area: head; display: flex; align-items: baseline; gap: 16px;
  padding: 8px 14px; background: #1e293b; color: #f8fafc;
}
header h1 { font-size: 16px; margin: 0; }
header .summary { color: #cbd5e1; }
header .tools { margin-left: auto; display: flex; gap: 4px; }
header button {
  min-width: 30px; padding: 2px 8px; border: 1px solid #64748b; border-radius: 4px;
  background: #334155; color: #f8fafc; font: inherit; cursor: pointer;
}
#side {
  grid-area: side; overflow: auto; padding: 6px 12px 12px; border-right: 1px solid #cbd5e1;
  background: #fff;
}
#side h2 {
  font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: #475569;
  margin: 12px 0 6px;
}
#side ul { list-style: none; margin: 0; padding: 0; }
.legend li { display: flex; align-items: center; gap: 8px; margin: 3px 0; }
.sw { display: inline-block; width: 26px; height: 14px; flex: none; border: 1.5px solid; }
.sw.line { height: 0; border-width: 2px 0 0; border-color: #475569; }
.sw.line.rule { border-top-style: dashed; border-color: #c2410c; }
.sw.start { background: #1e293b; border-color: #1e293b; border-radius: 4px; }
.sw.rule_start { background: #ffedd5; border-color: #c2410c; border-style: dashed;
  border-radius: 4px; }
.sw.user { background: #dbeafe; border-color: #2563eb; border-radius: 4px; }
.sw.action { background: #dcfce7; border-color: #16a34a; border-radius: 50%; }
.sw.slot { background: #fef9c3; border-color: #ca8a04; }
.sw.form { background: #f3e8ff; border-color: #9333ea; }
.sw.checkpoint { background: #ffe4e6; border-color: #e11d48;
  clip-path: polygon(0 0, 80% 0, 100% 50%, 80% 100%, 0 100%); }
.stories li {
  padding: 3px 6px; margin: 1px 0; border-radius: 4px; cursor: pointer;
  border-left: 3px solid #475569; overflow-wrap: anywhere;
}
.stories li.rule { border-left: 3px dashed #c2410c; }
.stories li:hover { background: #f1f5f9; }
.stories li.hl { background: #fde68a; }
.hint { color: #64748b; font-size: 12px; margin-top: 14px; }
#view { grid-area: view; position: relative; overflow: hidden; cursor: grab; }
#view.dragging { cursor: grabbing; }
#canvas { position: absolute; left: 0; top: 0; transform-origin: 0 0; }
#canvas svg { display: block; }
g.node { cursor: pointer; }
#view.dimmed g.node, #view.dimmed g.edge { opacity: .18; }
#view.dimmed g.hl { opacity: 1; }
g.node.hl > :is(polygon, ellipse, path), g.node.hl a > :is(polygon, ellipse, path) {
  stroke: #d97706; stroke-width: 3px;
}
g.edge.hl path { stroke-width: 3px; }
"""

JS = """
(() => {
  const view = document.getElementById("view");
  const canvas = document.getElementById("canvas");
  const svg = canvas.querySelector("svg");
  const items = Array.from(svg.querySelectorAll("g[data-stories]"));
  const entries = Array.from(document.querySelectorAll(".stories li"));
  let scale = 1, x = 0, y = 0, drag = null, moved = false, selected = new Set();

  const apply = () => {
    canvas.style.transform = `translate(${x}px, ${y}px) scale(${scale})`;
  };
  // The whole graph when it stays readable at that size, else the full width (drag down).
  const fit = () => {
    const box = svg.getBoundingClientRect();
    const width = box.width / scale, height = box.height / scale;
    const across = (view.clientWidth - 24) / width, down = (view.clientHeight - 24) / height;
    scale = Math.min(1, across, down);
    if (scale < 0.6) scale = Math.max(0.2, Math.min(1, across));
    x = Math.max(12, (view.clientWidth - width * scale) / 2);
    y = 12;
    apply();
  };
  const zoom = (factor, px, py) => {
    const next = Math.min(8, Math.max(0.05, scale * factor));
    x = px - (px - x) * next / scale;
    y = py - (py - y) * next / scale;
    scale = next;
    apply();
  };
  const storiesOf = (el) => el.dataset.stories.split(" ").filter(Boolean);
  const show = (set) => {
    view.classList.toggle("dimmed", set.size > 0);
    for (const el of items) {
      el.classList.toggle("hl", set.size > 0 && storiesOf(el).some((s) => set.has(s)));
    }
    for (const li of entries) li.classList.toggle("hl", set.has(li.dataset.story));
  };
  const select = (set) => { selected = set; show(selected); };

  view.addEventListener("wheel", (e) => {
    e.preventDefault();
    const box = view.getBoundingClientRect();
    zoom(Math.exp(-e.deltaY * 0.0015), e.clientX - box.left, e.clientY - box.top);
  }, { passive: false });
  view.addEventListener("pointerdown", (e) => {
    drag = { dx: e.clientX - x, dy: e.clientY - y, sx: e.clientX, sy: e.clientY };
    moved = false;
  });
  window.addEventListener("pointermove", (e) => {
    if (!drag) return;
    if (Math.abs(e.clientX - drag.sx) + Math.abs(e.clientY - drag.sy) > 4) {
      moved = true;
      view.classList.add("dragging");
    }
    if (moved) { x = e.clientX - drag.dx; y = e.clientY - drag.dy; apply(); }
  });
  window.addEventListener("pointerup", () => { drag = null; view.classList.remove("dragging"); });
  view.addEventListener("click", (e) => {
    if (moved) return;
    const node = e.target.closest("g.node[data-stories]");
    select(node ? new Set(storiesOf(node)) : new Set());
  });
  for (const node of items.filter((el) => el.matches("g.node"))) {
    node.addEventListener("mouseenter", () => {
      if (!selected.size) show(new Set(storiesOf(node)));
    });
    node.addEventListener("mouseleave", () => show(selected));
  }
  for (const li of entries) {
    li.addEventListener("click", () => {
      const only = selected.size === 1 && selected.has(li.dataset.story);
      select(only ? new Set() : new Set([li.dataset.story]));
      if (!only) {
        const first = items.find(
          (el) => el.matches("g.node") && storiesOf(el).includes(li.dataset.story));
        if (first) {
          const a = first.getBoundingClientRect(), v = view.getBoundingClientRect();
          if (a.bottom < v.top || a.top > v.bottom || a.right < v.left || a.left > v.right) {
            x += v.left + v.width / 2 - (a.left + a.width / 2);
            y += v.top + v.height / 3 - (a.top + a.height / 2);
            apply();
          }
        }
      }
    });
  }
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") select(new Set()); });
  const center = () => [view.clientWidth / 2, view.clientHeight / 2];
  document.getElementById("zoom-in").addEventListener("click", () => zoom(1.25, ...center()));
  document.getElementById("zoom-out").addEventListener("click", () => zoom(0.8, ...center()));
  document.getElementById("zoom-fit").addEventListener("click", fit);
  fit();
})();
"""
