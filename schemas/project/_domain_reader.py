"""Reading `domain.yml` (or each file of a `domain/` folder) into the `Domain` model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from schemas.project._read import FileReader, line_of, type_name
from schemas.project._yaml import LineDict
from schemas.project.domain import (
    MAPPING_TYPES,
    RESPONSE_KEYS,
    SLOT_TYPES,
    Action,
    Entity,
    Form,
    Intent,
    MappingCondition,
    Response,
    ResponseVariation,
    SessionConfig,
    Slot,
    SlotCondition,
    SlotMapping,
    SlotType,
)

DOMAIN_KEYS = (
    "version",
    "intents",
    "entities",
    "slots",
    "responses",
    "forms",
    "actions",
    "session_config",
    "config",
    "e2e_actions",
)
SECTION_TYPES: dict[str, type] = {
    "intents": list,
    "entities": list,
    "actions": list,
    "slots": dict,
    "responses": dict,
    "forms": dict,
}
MAPPING_KEYS = (
    "type",
    "entity",
    "role",
    "group",
    "intent",
    "not_intent",
    "value",
    "action",
    "conditions",
)


@dataclass
class DomainParts:
    """What the domain files define, before merging into one `Domain`."""

    intents: list[Intent] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)
    forms: list[Form] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    session_config: SessionConfig | None = None
    store_entities_as_slots: bool | None = None
    # Sections that could not be read: checks against them would only repeat the problem.
    broken: set[str] = field(default_factory=set)


def read_domain_file(data: LineDict, reader: FileReader, parts: DomainParts) -> None:
    """Add what one domain file defines to `parts`."""
    reader.unknown_keys(data, DOMAIN_KEYS, "the domain")
    for section, kind in SECTION_TYPES.items():
        if section in data and data[section] is not None and not isinstance(data[section], kind):
            parts.broken.add(section)
    if "intents" in data:
        _intents(data["intents"], data.line_of("intents"), reader, parts)
    if "entities" in data:
        _entities(data["entities"], data.line_of("entities"), reader, parts)
    if "slots" in data:
        _slots(data["slots"], data.line_of("slots"), reader, parts)
    if "responses" in data:
        read_responses(data["responses"], data.line_of("responses"), reader, parts)
    if "forms" in data:
        _forms(data["forms"], data.line_of("forms"), reader, parts)
    if "actions" in data:
        _actions(data["actions"], data.line_of("actions"), reader, parts)
    if "session_config" in data:
        parts.session_config = _session(
            data["session_config"], data.line_of("session_config"), reader
        )
    config = data.get("config")
    if isinstance(config, LineDict) and "store_entities_as_slots" in config:
        parts.store_entities_as_slots = reader.boolean(
            config["store_entities_as_slots"],
            config.line_of("store_entities_as_slots"),
            "store_entities_as_slots",
            True,
        )


def _named_items(value: Any, line: int | None, reader: FileReader, what: str):  # type: ignore[no-untyped-def]
    """Items that are a name, or a one-key mapping `name: {options}`."""
    items = reader.sequence(value, line, what)
    for index, item in enumerate(items or ()):
        item_line = line_of(items, index, line)
        if isinstance(item, str):
            yield item, None, item_line
        elif isinstance(item, LineDict) and len(item) == 1:
            name, options = next(iter(item.items()))
            if options is None and what in ("`intents`", "`entities`"):
                reader.error(
                    item_line,
                    f"`{name}` in {what} ends with `:` but has no options",
                    "remove the `:`, or indent its options under it (Rasa rejects it)",
                )
                yield str(name), None, item_line
                continue
            if options is not None and not isinstance(options, LineDict):
                reader.error(
                    item_line,
                    f"the options of `{name}` in {what} should be a mapping, "
                    f"not {type_name(options)}",
                )
                continue
            yield str(name), options, item_line
        else:
            reader.error(
                item_line,
                f"an item of {what} should be a name or `name: {{options}}`, not {type_name(item)}",
            )


def _intents(value: Any, line: int | None, reader: FileReader, parts: DomainParts) -> None:
    for name, options, item_line in _named_items(value, line, reader, "`intents`"):
        use: bool | tuple[str, ...] = True
        ignore: tuple[str, ...] = ()
        if options:
            reader.unknown_keys(
                options, ("use_entities", "ignore_entities", "triggers"), f"intent `{name}`"
            )
            raw_use = options.get("use_entities", True)
            if isinstance(raw_use, bool):
                use = raw_use
            elif raw_use is not None:
                use = tuple(
                    reader.strings(raw_use, options.line_of("use_entities"), "use_entities")
                )
            if "ignore_entities" in options:
                ignore = tuple(
                    reader.strings(
                        options["ignore_entities"],
                        options.line_of("ignore_entities"),
                        "ignore_entities",
                    )
                )
        parts.intents.append(Intent(name, reader.source(item_line), use, ignore))


def _entities(value: Any, line: int | None, reader: FileReader, parts: DomainParts) -> None:
    for name, options, item_line in _named_items(value, line, reader, "`entities`"):
        roles: tuple[str, ...] = ()
        groups: tuple[str, ...] = ()
        influence = True
        if options:
            reader.unknown_keys(
                options, ("roles", "groups", "influence_conversation"), f"entity `{name}`"
            )
            roles = tuple(
                reader.strings(options.get("roles", []), options.line_of("roles"), "roles")
            )
            groups = tuple(
                reader.strings(options.get("groups", []), options.line_of("groups"), "groups")
            )
            influence = reader.boolean(
                options.get("influence_conversation"),
                options.line_of("influence_conversation"),
                "influence_conversation",
                True,
            )
        parts.entities.append(Entity(name, reader.source(item_line), roles, groups, influence))


def _slots(value: Any, line: int | None, reader: FileReader, parts: DomainParts) -> None:
    slots = reader.mapping(value, line, "`slots`")
    for name, spec in (slots or {}).items():
        slot_line = slots.line_of(name) if slots else line
        spec = reader.mapping(spec, slot_line, f"slot `{name}`")
        if spec is None:
            continue
        reader.unknown_keys(
            spec,
            (
                "type",
                "influence_conversation",
                "initial_value",
                "values",
                "min_value",
                "max_value",
                "mappings",
            ),
            f"slot `{name}`",
        )
        slot_type = spec.get("type")
        if slot_type not in SLOT_TYPES:
            hint = f"use one of: {', '.join(SLOT_TYPES)}"
            if slot_type == "unfeaturized":
                hint = "Rasa 2's `unfeaturized` is `type: any` (influence_conversation: false)"
            elif isinstance(slot_type, str) and "." in slot_type:
                hint = "custom slot classes are not supported by Parley; " + hint
            reader.error(
                spec.line_of("type"), f"slot `{name}` has unknown type {slot_type!r}", hint
            )
            slot_type = "any"  # keep the slot, so references to it are not reported again
        mappings = _mappings(name, spec, slot_line, reader)
        parts.slots.append(
            Slot(
                name=str(name),
                type=cast(SlotType, slot_type),
                source=reader.source(slot_line),
                influence_conversation=reader.boolean(
                    spec.get("influence_conversation"),
                    spec.line_of("influence_conversation"),
                    "influence_conversation",
                    slot_type != "any",
                ),
                initial_value=spec.get("initial_value"),
                values=tuple(
                    str(v)
                    for v in reader.strings(
                        spec.get("values", []), spec.line_of("values"), "values"
                    )
                ),
                min_value=reader.number(
                    spec.get("min_value"), spec.line_of("min_value"), "min_value"
                )
                or 0.0,
                max_value=_max(spec, reader),
                mappings=tuple(mappings),
            )
        )


def _max(spec: LineDict, reader: FileReader) -> float:
    value = reader.number(spec.get("max_value"), spec.line_of("max_value"), "max_value")
    return 1.0 if value is None else value


def _mappings(
    slot: str, spec: LineDict, slot_line: int | None, reader: FileReader
) -> list[SlotMapping]:
    if "mappings" not in spec:
        reader.warning(
            slot_line,
            f"slot `{slot}` has no `mappings`",
            "Rasa 3 fills slots only through mappings: add `mappings:` "
            "(use `- type: custom` when a custom action sets it)",
        )
        return []
    items = reader.sequence(spec["mappings"], spec.line_of("mappings"), f"mappings of `{slot}`")
    out = []
    for index, item in enumerate(items or ()):
        item_line = line_of(items, index)
        mapping = reader.mapping(item, item_line, f"a mapping of slot `{slot}`")
        if mapping is None:
            continue
        reader.unknown_keys(mapping, MAPPING_KEYS, f"a mapping of slot `{slot}`")
        kind = mapping.get("type")
        if kind not in MAPPING_TYPES:
            reader.error(
                mapping.line_of("type"),
                f"slot `{slot}` has a mapping of unknown type {kind!r}",
                f"use one of: {', '.join(MAPPING_TYPES)}",
            )
            continue
        if kind == "from_entity" and not mapping.get("entity"):
            reader.error(
                item_line,
                f"the from_entity mapping of slot `{slot}` names no `entity`",
                "add `entity: <entity name>`",
            )
            continue
        if kind in ("from_intent", "from_trigger_intent") and "value" not in mapping:
            reader.error(
                item_line,
                f"the {kind} mapping of slot `{slot}` has no `value`",
                "add the `value:` the slot takes when the intent is seen",
            )
        out.append(
            SlotMapping(
                type=kind,
                source=reader.source(item_line),
                entity=mapping.get("entity"),
                role=mapping.get("role"),
                group=mapping.get("group"),
                intent=tuple(
                    reader.strings(mapping.get("intent", []), mapping.line_of("intent"), "intent")
                ),
                not_intent=tuple(
                    reader.strings(
                        mapping.get("not_intent", []), mapping.line_of("not_intent"), "not_intent"
                    )
                ),
                value=mapping.get("value"),
                action=mapping.get("action"),
                conditions=tuple(_conditions(mapping, reader)),
            )
        )
    return out


def _conditions(mapping: LineDict, reader: FileReader) -> list[MappingCondition]:
    if "conditions" not in mapping:
        return []
    items = reader.sequence(mapping["conditions"], mapping.line_of("conditions"), "conditions")
    out = []
    for index, item in enumerate(items or ()):
        condition = reader.mapping(item, line_of(items, index), "a condition")
        if condition is None:
            continue
        reader.unknown_keys(condition, ("active_loop", "requested_slot"), "a condition")
        out.append(MappingCondition(condition.get("active_loop"), condition.get("requested_slot")))
    return out


def read_responses(value: Any, line: int | None, reader: FileReader, parts: DomainParts) -> None:
    """`responses:` of a domain file or of a data file (retrieval intents)."""
    responses = reader.mapping(value, line, "`responses`")
    for name, variations in (responses or {}).items():
        name_line = responses.line_of(name) if responses else line
        items = reader.sequence(variations, name_line, f"response `{name}`")
        out = []
        for index, item in enumerate(items or ()):
            variation = reader.mapping(
                item, line_of(items, index, name_line), f"a variation of response `{name}`"
            )
            if variation is None:
                continue
            built = _variation(str(name), variation, reader)
            if built is not None:
                out.append(built)
        parts.responses.append(Response(str(name), reader.source(name_line), tuple(out)))


def _variation(name: str, v: LineDict, reader: FileReader) -> ResponseVariation | None:
    reader.unknown_keys(v, (*RESPONSE_KEYS, "template"), f"response `{name}`")
    if not any(
        v.get(k) not in (None, "", [], {})
        for k in ("text", "image", "buttons", "custom", "attachment", "elements", "quick_replies")
    ):
        reader.error(
            v.line,
            f"a variation of response `{name}` has nothing to say",
            "give it a `text:` (or image, buttons, custom, attachment)",
        )
        return None
    conditions = []
    for item in v.get("condition") or ():
        if isinstance(item, LineDict) and item.get("type", "slot") == "slot" and "name" in item:
            conditions.append(SlotCondition(str(item["name"]), item.get("value")))
        else:
            reader.error(
                v.line_of("condition"),
                f"a condition of response `{name}` should be "
                "`- type: slot, name: <slot>, value: <value>`",
            )
    text = v.get("text")
    if text is not None and not isinstance(text, str):
        text = str(text)
    return ResponseVariation(
        source=reader.source(v.line),
        text=text,
        image=v.get("image"),
        buttons=tuple(v.get("buttons") or ()),
        quick_replies=tuple(v.get("quick_replies") or ()),
        attachment=v.get("attachment"),
        custom=v.get("custom"),
        elements=tuple(v.get("elements") or ()),
        channel=v.get("channel"),
        condition=tuple(conditions),
        metadata=dict(v.get("metadata") or {}),
        id=v.get("id"),
    )


def _forms(value: Any, line: int | None, reader: FileReader, parts: DomainParts) -> None:
    forms = reader.mapping(value, line, "`forms`")
    for name, spec in (forms or {}).items():
        form_line = forms.line_of(name) if forms else line
        spec = reader.mapping(spec if spec is not None else LineDict(), form_line, f"form `{name}`")
        if spec is None:
            continue
        reader.unknown_keys(spec, ("required_slots", "ignored_intents"), f"form `{name}`")
        required = spec.get("required_slots", [])
        if isinstance(required, LineDict):
            reader.error(
                spec.line_of("required_slots"),
                f"form `{name}` lists its slots in Rasa 2's mapping format",
                "Rasa 3: `required_slots` is a list of slot names; move the "
                "mappings to the slots under `slots:`",
            )
            required = [str(slot) for slot in required]  # keep the form and its slots
        parts.forms.append(
            Form(
                name=str(name),
                source=reader.source(form_line),
                required_slots=tuple(
                    reader.strings(required, spec.line_of("required_slots"), "required_slots")
                ),
                ignored_intents=tuple(
                    reader.strings(
                        spec.get("ignored_intents", []),
                        spec.line_of("ignored_intents"),
                        "ignored_intents",
                    )
                ),
            )
        )


def _actions(value: Any, line: int | None, reader: FileReader, parts: DomainParts) -> None:
    for name, options, item_line in _named_items(value, line, reader, "`actions`"):
        send = bool(options.get("send_domain", False)) if options else False
        parts.actions.append(Action(name, reader.source(item_line), send))


def _session(value: Any, line: int | None, reader: FileReader) -> SessionConfig | None:
    spec = reader.mapping(value, line, "`session_config`")
    if spec is None:
        return None
    reader.unknown_keys(
        spec, ("session_expiration_time", "carry_over_slots_to_new_session"), "`session_config`"
    )
    expiration = reader.number(
        spec.get("session_expiration_time", 60),
        spec.line_of("session_expiration_time"),
        "session_expiration_time",
    )
    return SessionConfig(
        session_expiration_time=60.0 if expiration is None else expiration,
        carry_over_slots_to_new_session=reader.boolean(
            spec.get("carry_over_slots_to_new_session"),
            spec.line_of("carry_over_slots_to_new_session"),
            "carry_over_slots_to_new_session",
            True,
        ),
    )
