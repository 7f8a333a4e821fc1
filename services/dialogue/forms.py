"""Rasa 3.x's `FormAction` (a loop action) as a resumable state machine, without I/O.

One run of a form, as `LoopAction.run` and `FormAction` in `rasa/core/actions/loops.py` and
`forms.py` do it, on the tracker as it was before the form ran:

1. activation (the form is not the active loop): `active_loop` for the form, and the required
   slots already filled are the slot candidates;
2. validation: after `action_listen` (and not interrupted) the candidates are the slot events
   since the latest user message of the form's required slots (and the requested slot), a
   non-unique `from_entity` mapping counting only for the requested slot; after another action
   there are none. `validate_<form>` (if the domain lists it) gets the tracker plus
   `requested_slot` as the form knows it, `action <form>`, the form's events so far and the
   candidates (rasa-sdk's `FormValidationAction` validates the trailing `slot` events). A
   candidate it returns no `slot` event for is valid; `slot <name> null` marks it invalid.
   Nothing validated while a slot was requested (and not activating) rejects the form; an
   `action_execution_rejected` among the validation's events is the action's own rejection;
3. the next slot: the `requested_slot` the validation set (its first one, as Rasa reads it),
   else the first required slot without a value; it is asked with `action_ask_<form>_<slot>`,
   `utter_ask_<form>_<slot>`, `action_ask_<slot>` or `utter_ask_<slot>`, the first the domain
   has (a response runs here, a custom action is another call);
4. done (the last `requested_slot` is null, or the last `active_loop` is null): the form ends
   with `requested_slot` null and `active_loop` null.

A step that needs a custom action returns `Call`: the engine records it as pending, with the
run (`FormRun.to_json`) and the events the action's tracker must include (`provisional`), and
resumes with `FormRunner.resume` when the result comes. `Finished` carries the form's events
(recorded after `action <form>`), `Rejected` the form's rejection.

Deviation from Rasa: on activation the validation action is called once, with the prefilled
slots (Rasa calls it a second time with no candidates, which can only add `requested_slot`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from schemas.events import (
    ActionExecuted,
    ActionExecutionRejected,
    ActiveLoop,
    Event,
    SlotSet,
    UserUttered,
    parse_events,
)
from schemas.project.domain import REQUESTED_SLOT, Domain, SlotMapping
from services.dialogue.builtin_actions import is_local
from services.dialogue.responses import ResponseRenderer
from services.dialogue.tracker import TrackerState, apply

ACTION_LISTEN = "action_listen"

Stage = Literal["validate", "ask"]


@dataclass(frozen=True)
class FormRun:
    """Where one run of a form stands (JSON-able, kept in the pending record)."""

    form: str
    stage: Stage
    activating: bool
    slot_to_fill: str | None  # `requested_slot` of the active form before it ran
    check_rejection: bool  # the run validates user input: nothing filled rejects it
    candidates: dict[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()  # the form's events so far

    def to_json(self) -> dict[str, Any]:
        return {
            "form": self.form,
            "stage": self.stage,
            "activating": self.activating,
            "slot_to_fill": self.slot_to_fill,
            "check_rejection": self.check_rejection,
            "candidates": dict(self.candidates),
            "events": [e.to_dict() for e in self.events],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FormRun:
        stage = data["stage"]
        if stage not in ("validate", "ask"):
            raise ValueError(f"unknown form stage {stage!r}")
        return cls(
            data["form"],
            stage,
            bool(data["activating"]),
            data["slot_to_fill"],
            bool(data["check_rejection"]),
            dict(data["candidates"]),
            tuple(parse_events(data["events"])),
        )


@dataclass(frozen=True)
class Call:
    """The form needs custom action `action`, its tracker extended by `provisional`."""

    action: str
    provisional: tuple[Event, ...]
    run: FormRun


@dataclass(frozen=True)
class Finished:
    """The form ran: its events, recorded after `action <form>` unless `executed` is False
    (the validation action rejected the run itself: Rasa records its events, no action)."""

    events: tuple[Event, ...]
    executed: bool = True


@dataclass(frozen=True)
class Rejected:
    """The form rejected its execution (the requested slot was not filled)."""

    reason: str


Step = Call | Finished | Rejected


def with_provisional(
    state: TrackerState,
    events: Sequence[Event],
    provisional: Sequence[Event],
    slot_defaults: Mapping[str, Any],
) -> tuple[TrackerState, list[Event]]:
    """The tracker state and events with `provisional` applied (what a form's action sees)."""
    history = list(events)
    for event in provisional:
        state = apply(state, event, history, slot_defaults)
        history.append(event)
    return state, history


def is_done(events: Sequence[Event]) -> bool:
    """Rasa's `FormAction.is_done`: the last `requested_slot` or `active_loop` is null."""
    if any(isinstance(e, ActionExecutionRejected) for e in events):
        return False
    requested = next(
        (e for e in reversed(events) if isinstance(e, SlotSet) and e.name == REQUESTED_SLOT), None
    )
    if requested is not None and requested.value is None:
        return True
    loop = next((e for e in reversed(events) if isinstance(e, ActiveLoop)), None)
    return loop is not None and loop.name is None


class FormRunner:
    """Runs the forms of one domain."""

    def __init__(
        self, domain: Domain, renderer: ResponseRenderer, slot_defaults: Mapping[str, Any]
    ) -> None:
        self.domain = domain
        self.renderer = renderer
        self.slot_defaults = dict(slot_defaults)
        self._unique: dict[str, set[tuple[Any, ...]]] = {}

    def is_form(self, name: str) -> bool:
        """A form of the domain (not overridden by a custom action of that name)."""
        return name in self.domain.forms and name not in self.domain.actions

    # -- entry points ---------------------------------------------------------------------

    def start(
        self,
        form: str,
        state: TrackerState,
        events: Sequence[Event],
        channel: str | None,
        now: float,
    ) -> Step:
        """Run `form` on the tracker (`state`, `events`) as it is before the form."""
        required = self.domain.forms[form].required_slots
        if state.active_loop_name != form:
            prefilled = {s: state.get_slot(s) for s in required if state.get_slot(s) is not None}
            run = FormRun(
                form,
                "validate",
                True,
                None,
                False,
                prefilled,
                (ActiveLoop(timestamp=now, name=form),),
            )
        else:
            slot_to_fill = state.get_slot(REQUESTED_SLOT)
            if state.latest_action_name == ACTION_LISTEN and not state.is_active_loop_interrupted:
                candidates = self._extractions(form, state, events, slot_to_fill)
                run = FormRun(form, "validate", False, slot_to_fill, True, candidates)
            else:
                run = FormRun(form, "validate", False, slot_to_fill, False)
        validate = f"validate_{form}"
        if self.domain.is_known_action(validate) and not is_local(validate, self.domain):
            provisional = (*self._base(run, now), *run.events, *self._candidate_events(run, now))
            return Call(validate, provisional, run)
        return self._validated(
            run, state, events, list(self._candidate_events(run, now)), channel, now
        )

    def resume(
        self,
        run: FormRun,
        state: TrackerState,
        events: Sequence[Event],
        status: str,
        produced: Sequence[Event],
        channel: str | None,
        now: float,
    ) -> Step:
        """Continue `run` with the result of its custom action: `produced` are the action's
        responses (as `bot` events) then its events; `status` is `success` or `rejected`."""
        if status == "rejected":
            return Rejected(f"custom action of {run.form} rejected its execution")
        if run.stage == "ask":
            return self._finish([*run.events, *produced], now)
        validated = {e.name for e in produced if isinstance(e, SlotSet)}
        unvalidated = [e for e in self._candidate_events(run, now) if e.name not in validated]
        return self._validated(run, state, events, [*produced, *unvalidated], channel, now)

    # -- the steps ------------------------------------------------------------------------

    def _validated(
        self,
        run: FormRun,
        state: TrackerState,
        events: Sequence[Event],
        validation: list[Event],
        channel: str | None,
        now: float,
    ) -> Step:
        manual = any(isinstance(e, ActionExecutionRejected) for e in validation)
        filled = any(isinstance(e, SlotSet) and e.name != REQUESTED_SLOT for e in validation)
        if run.check_rejection and run.slot_to_fill and not filled and not manual:
            return Rejected(f"Failed to extract slot {run.slot_to_fill} with action {run.form}")
        so_far = [*run.events, *validation]
        if manual:
            return Finished(tuple(so_far), executed=False)
        if run.activating and is_done(so_far):  # LoopAction.run skips `do`
            return self._finish(so_far, now)
        return self._request_next_slot(
            replace(run, events=tuple(so_far)), state, events, channel, now
        )

    def _request_next_slot(
        self,
        run: FormRun,
        state: TrackerState,
        events: Sequence[Event],
        channel: str | None,
        now: float,
    ) -> Step:
        so_far = list(run.events)
        if is_done(so_far):
            return self._finish(
                [*so_far, SlotSet(timestamp=now, name=REQUESTED_SLOT, value=None)], now
            )
        requested = next(
            (e.value for e in so_far if isinstance(e, SlotSet) and e.name == REQUESTED_SLOT), None
        )
        provisional = (*self._base(run, now), *so_far)
        temp, _ = with_provisional(state, events, provisional, self.slot_defaults)
        if not requested:
            required = self.domain.forms[run.form].required_slots
            requested = next((s for s in required if temp.get_slot(s) is None), None)
            if requested is None:  # no more required slots to fill
                done = SlotSet(timestamp=now, name=REQUESTED_SLOT, value=None)
                return self._finish([*so_far, done], now)
            so_far.append(SlotSet(timestamp=now, name=REQUESTED_SLOT, value=requested))
        ask = self._ask_action(run.form, str(requested))
        if ask is None:
            return self._finish(so_far, now)
        if is_local(ask, self.domain):
            bot = self.renderer.utter(ask, temp.slots, channel, now)
            return self._finish([*so_far, *([bot] if bot is not None else [])], now)
        return Call(ask, provisional, replace(run, stage="ask", events=tuple(so_far)))

    @staticmethod
    def _finish(events: list[Event], now: float) -> Finished:
        if is_done(events):
            events = [*events, ActiveLoop(timestamp=now, name=None)]
        return Finished(tuple(events))

    # -- helpers --------------------------------------------------------------------------

    def _base(self, run: FormRun, now: float) -> list[Event]:
        """What Rasa's temporary tracker inserts before the form's events."""
        return [
            SlotSet(timestamp=now, name=REQUESTED_SLOT, value=run.slot_to_fill),
            ActionExecuted(timestamp=now, name=run.form),
        ]

    @staticmethod
    def _candidate_events(run: FormRun, now: float) -> list[SlotSet]:
        return [SlotSet(timestamp=now, name=k, value=v) for k, v in run.candidates.items()]

    def _ask_action(self, form: str, slot: str) -> str | None:
        for name in (
            f"action_ask_{form}_{slot}",
            f"utter_ask_{form}_{slot}",
            f"action_ask_{slot}",
            f"utter_ask_{slot}",
        ):
            if self.domain.is_known_action(name):
                return name
        return None

    def _extractions(
        self, form: str, state: TrackerState, events: Sequence[Event], slot_to_fill: Any
    ) -> dict[str, Any]:
        """Rasa's `_get_slot_extractions`: slot events since the latest user message."""
        start = next(
            (i for i in range(len(events) - 1, -1, -1) if isinstance(events[i], UserUttered)), 0
        )
        required = set(self.domain.forms[form].required_slots)
        if slot_to_fill:
            required.add(slot_to_fill)
        values: dict[str, Any] = {}
        for event in events[start:]:
            if not isinstance(event, SlotSet) or event.name not in required:
                continue
            slot = self.domain.slots.get(event.name)
            mappings = slot.mappings if slot is not None else ()
            for mapping in mappings:
                not_unique = (
                    mapping.type == "from_entity"
                    and slot_to_fill != event.name
                    and _key(mapping) not in self._unique_mappings(form)
                )
                if not not_unique:
                    values[event.name] = event.value
        return values

    def _unique_mappings(self, form: str) -> set[tuple[Any, ...]]:
        if form not in self._unique:
            unique: set[tuple[Any, ...]] = set()
            duplicate: set[tuple[Any, ...]] = set()
            for name in self.domain.forms[form].required_slots:
                slot = self.domain.slots.get(name)
                for mapping in slot.mappings if slot is not None else ():
                    if mapping.type != "from_entity":
                        continue
                    key = _key(mapping)
                    if key in unique:
                        unique.discard(key)
                        duplicate.add(key)
                    elif key not in duplicate:
                        unique.add(key)
            self._unique[form] = unique
        return self._unique[form]


def _key(mapping: SlotMapping) -> tuple[Any, ...]:
    return (
        mapping.type,
        mapping.entity,
        mapping.role,
        mapping.group,
        mapping.intent,
        mapping.not_intent,
        repr(mapping.value),
        mapping.action,
        mapping.conditions,
    )
