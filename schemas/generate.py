"""Generate the committed JSON Schema and AsyncAPI files: `python -m schemas.generate`.

`make schemas` runs this; a test checks the committed files equal what it renders, so a
change of contract shows in the diff.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter

from schemas.envelopes import ENVELOPE_TYPES, SCHEMA_VERSION
from schemas.events import AnyEvent
from schemas.topics import TOPICS, TopicSpec

GENERATED = Path(__file__).resolve().parent / "generated"
REF = "#/components/schemas/{model}"


def _schema(payload: Any, ref_template: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON schema of a payload and its definitions, split."""
    schema = TypeAdapter(payload).json_schema(ref_template=ref_template, mode="validation")
    defs = schema.pop("$defs", {})
    return schema, defs


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def event_record_schema(ref_template: str) -> dict[str, Any]:
    """The `parley.events` record: Rasa's event-broker body, `{"sender_id": ..., **event}`."""
    return {
        "title": "EventRecord",
        "description": "A tracker event as Rasa's Kafka event broker publishes it.",
        "type": "object",
        "required": ["sender_id", "event"],
        "properties": {"sender_id": {"type": "string"}},
        "allOf": [{"$ref": ref_template.format(model="AnyEvent")}],
    }


def render_json_schemas() -> dict[str, str]:
    """One standalone JSON Schema file per envelope, plus the events and the event record."""
    files: dict[str, str] = {}
    local = "#/$defs/{model}"
    for envelope in ENVELOPE_TYPES:
        schema, defs = _schema(envelope, local)
        if defs:
            schema["$defs"] = defs
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        files[f"jsonschema/{envelope.__name__}.json"] = _json(schema)
    events, defs = _schema(AnyEvent, local)
    events = {"title": "AnyEvent", **events, "$defs": defs}
    events["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    files["jsonschema/AnyEvent.json"] = _json(events)
    record = event_record_schema(local)
    record["$defs"] = {
        "AnyEvent": {k: v for k, v in events.items() if k not in ("$defs", "$schema")},
        **defs,
    }
    record["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    files["jsonschema/EventRecord.json"] = _json(record)
    return files


def _payload_ref(spec: TopicSpec, components: dict[str, Any]) -> dict[str, Any]:
    if spec.payload is None:
        components["EventRecord"] = event_record_schema(REF)
        return {"$ref": REF.format(model="EventRecord")}
    schema, defs = _schema(spec.payload, REF)
    components.update(defs)
    if "$ref" in schema:
        return schema
    components[spec.payload_name] = {"title": spec.payload_name, **schema}
    return {"$ref": REF.format(model=spec.payload_name)}


def render_asyncapi() -> str:
    """The AsyncAPI 3.0 document of every topic (addresses under the default `parley` prefix)."""
    components: dict[str, Any] = {}
    events, defs = _schema(AnyEvent, REF)
    components.update(defs)
    components["AnyEvent"] = {"title": "AnyEvent", **events}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in TOPICS:
        name = spec.topic.name.lower()
        messages[spec.payload_name] = {
            "name": spec.payload_name,
            "contentType": "application/json",
            "payload": _payload_ref(spec, components),
        }
        channels[name] = {
            "address": spec.topic.physical(),
            "description": spec.description,
            "messages": {spec.payload_name: {"$ref": f"#/components/messages/{spec.payload_name}"}},
            "bindings": {"kafka": {"bindingVersion": "0.5.0", "partitions": 4, "replicas": 1}},
        }
        key_binding = {
            "kafka": {"bindingVersion": "0.5.0", "key": {"type": "string", "description": spec.key}}
        }
        operations[f"send_{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": "Produced by " + ", ".join(spec.producers),
            "bindings": key_binding,
        }
        operations[f"receive_{name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": "Consumed by " + ", ".join(spec.consumers),
        }
    document = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Parley topics",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": (
                "Every message is keyed by its conversation id. Topic names carry a "
                "configurable prefix (`parley` by default)."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": dict(sorted(components.items())),
        },
    }
    return yaml.safe_dump(document, sort_keys=False, width=100, allow_unicode=True)


def render() -> dict[str, str]:
    """Every generated file, by path relative to `schemas/generated/`."""
    files = render_json_schemas()
    files["asyncapi.yaml"] = render_asyncapi()
    return files


def stale_files(root: Path = GENERATED) -> list[str]:
    """Generated files that are missing or differ from what `render()` gives."""
    rendered = render()
    stale = [
        path
        for path, content in rendered.items()
        if not (root / path).is_file() or (root / path).read_text() != content
    ]
    extra = [
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and str(p.relative_to(root)) not in rendered
    ]
    return sorted(stale + extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if files are out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"out of date: schemas/generated/{path} (run `make schemas`)", file=sys.stderr)
        return 1 if stale else 0
    for old in GENERATED.rglob("*"):
        if old.is_file():
            old.unlink()
    files = render()
    for path, content in files.items():
        target = GENERATED / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    print(f"wrote {len(files)} files under {GENERATED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
