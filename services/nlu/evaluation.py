"""NLU evaluation: Rasa-style intent and entity reports, error lists and pictures.

`evaluate` scores parse data (see `parse_data`) against annotated examples the way
`rasa test nlu` does, without scikit-learn:

- the intent report is sklearn's `classification_report(output_dict=True)` over the union of
  gold and predicted labels (a missing prediction is the label `"None"`, zero division gives
  0.0) with Rasa's `confused_with` (the top 3 wrong predictions of each gold intent);
- entities are matched on exact spans: a prediction counts only when its entity, role, group,
  start and end all equal a gold annotation's; identical predictions (two extractors finding
  the same span) count once;
- the errors are the examples with a wrong intent or a different entity set, the most
  confident mistakes first.

`write_reports` writes the JSON reports, a summary and two PNGs (matplotlib, imported only
there and drawn with the Agg canvas, so no display is needed).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from schemas.project.nlu import EntityAnnotation, Example

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NO_INTENT = "None"
CONFUSED_WITH_TOP = 3
ANNOTATE_MAX_LABELS = 30
HISTOGRAM_BINS = 20
DPI = 100
WORST_INTENTS = 5

# (entity, role, group, start, end): the key an exact-span match compares.
EntityKey = tuple[str, str | None, str | None, int, int]


@dataclass(frozen=True)
class EvaluationReport:
    """The scores of one evaluation, the reports Rasa writes, and what the pictures need."""

    examples: int
    intent_accuracy: float
    intent_macro_f1: float
    intent_weighted_f1: float
    entity_micro_f1: float | None
    intent_report: dict[str, Any]
    entity_report: dict[str, Any]
    errors: list[dict[str, Any]]
    gold_intents: tuple[str, ...] = ()
    predicted_intents: tuple[str, ...] = ()
    confidences: tuple[float, ...] = ()


def evaluate(examples: Sequence[Example], parses: Sequence[Mapping[str, Any]]) -> EvaluationReport:
    """Score `parses[i]`, the parse data predicted for `examples[i].text`, against the examples."""
    if len(examples) != len(parses):
        raise ValueError(f"{len(parses)} parses for {len(examples)} examples")
    gold = [example.intent for example in examples]
    predicted: list[str] = []
    confidences: list[float] = []
    gold_entities: list[set[EntityKey]] = []
    predicted_entities: list[set[EntityKey]] = []
    errors: list[tuple[float, dict[str, Any]]] = []
    for example, parse in zip(examples, parses, strict=True):
        intent = parse.get("intent") or {}
        name = intent.get("name")
        confidence = float(intent.get("confidence") or 0.0)
        predicted.append(NO_INTENT if name is None else str(name))
        confidences.append(confidence)
        entities = list(parse.get("entities") or ())
        gold_keys = {_annotation_key(entity) for entity in example.entities}
        predicted_keys = {_prediction_key(entity) for entity in entities}
        gold_entities.append(gold_keys)
        predicted_entities.append(predicted_keys)
        if name != example.intent or gold_keys != predicted_keys:
            error = {
                "text": example.text,
                "intent": example.intent,
                "intent_prediction": {"name": name, "confidence": confidence},
                "entities": [_annotation_dict(entity) for entity in example.entities],
                "predicted_entities": [_prediction_dict(entity) for entity in entities],
            }
            errors.append((confidence, error))
    errors.sort(key=lambda item: -item[0])

    intent_report = classification_report(gold, predicted)
    _add_confused_with(intent_report, gold, predicted)
    entity_report = entity_span_report(gold_entities, predicted_entities)
    any_entities = any(gold_entities) or any(predicted_entities)
    return EvaluationReport(
        examples=len(examples),
        intent_accuracy=intent_report["accuracy"],
        intent_macro_f1=intent_report["macro avg"]["f1-score"],
        intent_weighted_f1=intent_report["weighted avg"]["f1-score"],
        entity_micro_f1=entity_report["micro avg"]["f1-score"] if any_entities else None,
        intent_report=intent_report,
        entity_report=entity_report,
        errors=[error for _, error in errors],
        gold_intents=tuple(gold),
        predicted_intents=tuple(predicted),
        confidences=tuple(confidences),
    )


def classification_report(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """sklearn's `classification_report(output_dict=True, zero_division=0)`, labels sorted."""
    labels = sorted(set(gold) | set(predicted))
    tp = Counter(g for g, p in zip(gold, predicted, strict=True) if g == p)
    report: dict[str, Any] = {
        label: _scores(tp[label], predicted.count(label), gold.count(label)) for label in labels
    }
    report["accuracy"] = sum(tp.values()) / len(gold) if gold else 0.0
    report.update(_averages([report[label] for label in labels], len(gold)))
    return report


def entity_span_report(
    gold: Sequence[set[EntityKey]], predicted: Sequence[set[EntityKey]]
) -> dict[str, Any]:
    """Per entity name precision/recall/F1 on exact spans, with micro and macro averages."""
    tp: Counter[str] = Counter()
    gold_count: Counter[str] = Counter()
    predicted_count: Counter[str] = Counter()
    for gold_keys, predicted_keys in zip(gold, predicted, strict=True):
        tp.update(key[0] for key in gold_keys & predicted_keys)
        gold_count.update(key[0] for key in gold_keys)
        predicted_count.update(key[0] for key in predicted_keys)
    labels = sorted(set(gold_count) | set(predicted_count))
    report: dict[str, Any] = {
        label: _scores(tp[label], predicted_count[label], gold_count[label]) for label in labels
    }
    total = sum(gold_count.values())
    report["micro avg"] = _scores(sum(tp.values()), sum(predicted_count.values()), total)
    report["macro avg"] = _averages([report[label] for label in labels], total)["macro avg"]
    return report


def _scores(true_positives: int, predicted: int, support: int) -> dict[str, Any]:
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1-score": f1, "support": support}


def _averages(rows: Sequence[Mapping[str, Any]], total: int) -> dict[str, Any]:
    metrics = ("precision", "recall", "f1-score")
    count = len(rows)
    macro = {m: sum(float(row[m]) for row in rows) / count if count else 0.0 for m in metrics}
    weighted = {
        m: sum(float(row[m]) * int(row["support"]) for row in rows) / total if total else 0.0
        for m in metrics
    }
    return {
        "macro avg": {**macro, "support": total},
        "weighted avg": {**weighted, "support": total},
    }


def _add_confused_with(
    report: dict[str, Any], gold: Sequence[str], predicted: Sequence[str]
) -> None:
    """Rasa's `confused_with`: each label's most frequent wrong predictions, ties by name."""
    wrong = Counter((g, p) for g, p in zip(gold, predicted, strict=True) if g != p)
    for label in sorted(set(gold) | set(predicted)):
        mistakes = sorted(((-n, p) for (g, p), n in wrong.items() if g == label))
        report[label]["confused_with"] = {p: -n for n, p in mistakes[:CONFUSED_WITH_TOP]}


def _annotation_key(entity: EntityAnnotation) -> EntityKey:
    return (entity.entity, entity.role, entity.group, entity.start, entity.end)


def _prediction_key(entity: Mapping[str, Any]) -> EntityKey:
    role, group = entity.get("role"), entity.get("group")
    return (
        str(entity.get("entity")),
        None if role is None else str(role),
        None if group is None else str(group),
        int(entity.get("start", -1)),
        int(entity.get("end", -1)),
    )


def _annotation_dict(entity: EntityAnnotation) -> dict[str, Any]:
    out: dict[str, Any] = {
        "entity": entity.entity,
        "start": entity.start,
        "end": entity.end,
        "value": entity.value,
    }
    if entity.role is not None:
        out["role"] = entity.role
    if entity.group is not None:
        out["group"] = entity.group
    return out


def _prediction_dict(entity: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("entity", "start", "end", "value", "role", "group", "extractor")
    return {key: entity[key] for key in keys if entity.get(key) is not None}


def render_summary(report: EvaluationReport) -> str:
    """A few readable lines: the headline scores and the worst intents by F1."""
    entity = (
        "n/a (no entities)" if report.entity_micro_f1 is None else f"{report.entity_micro_f1:.4f}"
    )
    lines = [
        f"Examples:            {report.examples}",
        f"Intent accuracy:     {report.intent_accuracy:.4f}",
        f"Intent macro F1:     {report.intent_macro_f1:.4f}",
        f"Intent weighted F1:  {report.intent_weighted_f1:.4f}",
        f"Entity micro F1:     {entity}",
        f"Errors:              {len(report.errors)}",
    ]
    worst = sorted(
        (row["f1-score"], label, row)
        for label, row in _label_rows(report.intent_report)
        if row["support"] > 0
    )[:WORST_INTENTS]
    if worst:
        lines.append(f"Worst {len(worst)} intents by F1:")
        width = max(len(label) for _, label, _ in worst)
        lines.extend(
            f"  {label:<{width}}  f1={f1:.3f}  precision={row['precision']:.3f}"
            f"  recall={row['recall']:.3f}  support={row['support']}"
            for f1, label, row in worst
        )
    return "\n".join(lines) + "\n"


def _label_rows(report: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for label, row in report.items():
        if isinstance(row, Mapping) and label not in ("macro avg", "weighted avg", "micro avg"):
            yield label, row


def write_reports(report: EvaluationReport, out: str | Path) -> list[Path]:
    """Write the reports, the error list, the summary and the pictures into `out`."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, content in (
        ("intent_report.json", report.intent_report),
        ("entity_report.json", report.entity_report),
        ("errors.json", report.errors),
    ):
        path = folder / name
        path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    written.append(plot_confusion_matrix(report, folder / "intent_confusion_matrix.png"))
    written.append(plot_confidence_histogram(report, folder / "intent_histogram.png"))
    summary = folder / "summary.txt"
    summary.write_text(render_summary(report), encoding="utf-8")
    written.append(summary)
    return written


def confusion_matrix(
    gold: Sequence[str], predicted: Sequence[str]
) -> tuple[list[str], np.ndarray[Any, np.dtype[np.int64]]]:
    """The sorted labels and counts[gold index, predicted index]."""
    labels = sorted(set(gold) | set(predicted))
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for g, p in zip(gold, predicted, strict=True):
        counts[index[g], index[p]] += 1
    return labels, counts


def plot_confusion_matrix(report: EvaluationReport, path: Path) -> Path:
    """Gold intents down, predicted across; counts written in the cells for few labels."""
    labels, counts = confusion_matrix(report.gold_intents, report.predicted_intents)
    from matplotlib.ticker import MaxNLocator

    font = 10 if len(labels) <= ANNOTATE_MAX_LABELS else 8
    # The cells get ~0.28 inch each, the tick labels ~0.6 of their font size per character.
    margin = 0.6 * font / 72 * max((len(label) for label in labels), default=0)
    size = max(4.0, 1.5 + 0.28 * len(labels)) + margin
    figure = _figure(size + 1.5, size)
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues", interpolation="nearest", aspect="auto")
    colorbar = figure.colorbar(image, ax=axes, fraction=0.04)
    colorbar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ticks = range(len(labels))
    axes.set_xticks(ticks, labels, rotation=90, fontsize=font)
    axes.set_yticks(ticks, labels, fontsize=font)
    axes.set_xlabel("Predicted intent")
    axes.set_ylabel("Gold intent")
    axes.set_title(f"Intent confusion matrix (accuracy {report.intent_accuracy:.3f})")
    if 0 < len(labels) <= ANNOTATE_MAX_LABELS:
        threshold = counts.max() / 2
        for (row, column), value in np.ndenumerate(counts):
            if value:
                colour = "white" if value > threshold else "black"
                axes.text(column, row, str(value), ha="center", va="center", color=colour)
    return _save(figure, path)


def plot_confidence_histogram(report: EvaluationReport, path: Path) -> Path:
    """Rasa's confidence histogram: correct and wrong predictions side by side in 0.05 bins."""
    bins = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    pairs = zip(report.gold_intents, report.predicted_intents, report.confidences, strict=True)
    correct: list[float] = []
    wrong: list[float] = []
    for gold, predicted, confidence in pairs:
        (correct if gold == predicted else wrong).append(min(max(confidence, 0.0), 1.0))
    width = (bins[1] - bins[0]) / 2
    figure = _figure(10.0, 6.0)
    axes = figure.add_subplot()
    for values, label, colour, shift in (
        (correct, "correct", "#2ca02c", 0.0),
        (wrong, "wrong", "#d62728", width),
    ):
        counts, _ = np.histogram(values, bins=bins)
        axes.bar(bins[:-1] + shift, counts, width=width, align="edge", color=colour, label=label)
    axes.set_xlim(0.0, 1.0)
    axes.set_xticks(bins[::2])
    axes.set_xlabel("Confidence")
    axes.set_ylabel("Number of examples")
    axes.set_title(f"Intent prediction confidence ({len(correct)} correct, {len(wrong)} wrong)")
    axes.legend()
    return _save(figure, path)


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI, format="png")
    return path
