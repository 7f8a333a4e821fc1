"""Load + validate a 10k-example bot project; baseline: parsing the same files with libyaml.

    python -m benchmarks.project_load [--shared ../shared] [--repeats 7]

The project is built from HWU64 fold 1 (9,960 examples, 64 intents, 54 entity types): a
domain listing its intents, entities and one response per intent, a story per intent and
a rule per intent. Target: load + validate under 2 s on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from schemas.project.loader import read_nlu_file, read_project
from schemas.project.validation import validate

REPO = Path(__file__).resolve().parents[1]


def build_project(shared: Path, root: Path) -> int:
    """Write the benchmark project under `root`; returns the number of examples."""
    source = shared / "data" / "nlu" / "hwu64" / "yaml" / "KFold_1" / "train.yml"
    data, _ = read_nlu_file(source)
    intents = sorted(data.intents())
    entities = sorted({e.entity for x in data.examples for e in x.entities})
    (root / "data").mkdir(parents=True)
    (root / "data" / "nlu.yml").write_bytes(source.read_bytes())
    (root / "config.yml").write_text(
        "language: en\npipeline:\n  - name: DIETClassifier\npolicies:\n"
        "  - name: MemoizationPolicy\n  - name: RulePolicy\n"
    )
    domain = {
        "version": "3.1",
        "intents": intents,
        "entities": entities,
        "responses": {f"utter_{i}": [{"text": f"About {i}."}] for i in intents},
    }
    (root / "domain.yml").write_text(yaml.safe_dump(domain, sort_keys=False))
    stories = {
        "version": "3.1",
        "stories": [
            {"story": f"story {i}", "steps": [{"intent": i}, {"action": f"utter_{i}"}]}
            for i in intents
        ],
    }
    rules = {
        "version": "3.1",
        "rules": [
            {"rule": f"rule {i}", "steps": [{"intent": i}, {"action": f"utter_{i}"}]}
            for i in intents
        ],
    }
    (root / "data" / "stories.yml").write_text(yaml.safe_dump(stories, sort_keys=False))
    (root / "data" / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    return len(data.examples)


def time_parley(root: Path) -> tuple[float, int, int]:
    started = time.perf_counter()
    project, problems = read_project(root)
    problems += validate(project)
    return time.perf_counter() - started, len(project.nlu.examples), len(problems)


def time_libyaml(root: Path) -> float:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    started = time.perf_counter()
    for path in sorted(root.rglob("*.yml")):
        yaml.load(path.read_text(), Loader=loader)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        examples = build_project(args.shared, root)
        parley, baseline, problems = [], [], 0
        for _ in range(args.repeats):
            baseline.append(time_libyaml(root))
            elapsed, loaded, problems = time_parley(root)
            parley.append(elapsed)
            assert loaded == examples
    report = {
        "benchmark": "project_load",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "examples": examples,
        "problems_reported": problems,
        "repeats": args.repeats,
        "load_validate_median_s": round(statistics.median(parley), 3),
        "load_validate_max_s": round(max(parley), 3),
        "libyaml_parse_median_s": round(statistics.median(baseline), 3),
        "ratio_to_libyaml_parse": round(statistics.median(parley) / statistics.median(baseline), 2),
        "target_s": 2.0,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
