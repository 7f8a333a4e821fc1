"""`parley test stories`: play a project's test stories end to end through the dialogue engine.

Each test story is one conversation through a real `DialogueEngine` (in memory):

- a `user:` step's text is parsed by the archive's NLU model (`--model`), and the intent (and
  the entities the story marks) compared with the story's; a step without text, or a run
  without an NLU model, uses the story's intent and entities (the report says which). As in
  Rasa's `rasa test --e2e`, a wrong intent or missing entity fails the story but does not stop
  it: the conversation goes on with what the NLU understood, and its actions are compared (a
  policy may still get them right, e.g. memoization by an end-to-end story's text);
- the engine predicts and runs actions as the worker does, custom actions included: they run
  in process with the project's action package (`--actions`, default `<project>/actions`),
  with Rasa's webhook payload (Rasa's `rasa test` does not run them);
- predicted actions are compared with the story's `action:` steps, `action_listen` before every
  user turn and at the end included (as Rasa counts it); `slot_was_set` and `active_loop`
  steps are checked against the events since the previous action (or the tracker there).

A story's form written in short, `active_loop: <form>` then `active_loop: null` with no user
turn between (Rasa's way of saying "the form did its job"), is applied as the story says: when
the form asks for a slot instead, its `action_listen` is dropped, the loop ends
(`active_loop: null`, `requested_slot: null`) and predicting resumes — as Rasa's evaluation
applies the story's own events.

A story stops being compared at its first action (slot, loop) difference; the actions after it
are counted as not reached. Writes `failed_test_stories.yml` (the failed stories, Rasa's format:
`# predicted: <action>` on the failing step) and `story_report.json` (precision, recall and F1
per action, stories correct) into `--out`, prints a summary, and exits 1 when a story failed.

The NLU model and the action package are reached through `StoryBackends` (this service imports
no other service): `services/story_backends.py` provides the in-process ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from schemas.envelopes import ActionRequest, ActionResult
from schemas.events import ActionExecuted, ActiveLoop, Event, SlotSet, UserUttered
from schemas.project.loader import Project, load_project
from schemas.project.problems import ProjectError
from schemas.project.stories import (
    ActionStep,
    CheckpointStep,
    LoopStep,
    OrStep,
    SlotStep,
    Step,
    Story,
    UserStep,
)
from services.common.errors import ParleyError
from services.common.model_archive import ArchiveError, read_members, resolve_model
from services.dialogue.domain_dict import domain_as_dict
from services.dialogue.engine import (
    ACTION_LISTEN,
    ACTION_SESSION_START,
    Conversation,
    DialogueEngine,
    Predictor,
    TurnResult,
)
from services.dialogue.forms import with_provisional
from services.dialogue.handlers import RASA_VERSION
from services.dialogue.model import ENSEMBLE_MEMBER, load_ensemble, train_core
from services.dialogue.tracker import TrackerState, Verbosity, apply, current_state, replay

__all__ = [
    "ActionsHandle",
    "NluHandle",
    "StoryBackends",
    "StoryError",
    "StoryResult",
    "StoryTester",
    "add_test_stories",
    "failed_stories_yaml",
    "story_report",
]

logger = logging.getLogger(__name__)

REQUESTED_SLOT = "requested_slot"
START_TIME = 1_700_000_000.0


class NluHandle(Protocol):
    """Parses texts as the NLU worker does (Rasa parse data, in order)."""

    async def parse(self, texts: Sequence[str]) -> list[dict[str, Any]]: ...


class ActionsHandle(Protocol):
    """Runs custom actions (an action request in, its result out)."""

    async def run(self, request: ActionRequest) -> ActionResult: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class StoryBackends:
    """How to reach the NLU model of an archive (None: the archive has none) and an action
    package (raises `ValueError` or `ParleyError` when it cannot be loaded)."""

    open_nlu: Callable[[Path], NluHandle | None]
    open_actions: Callable[[Path], ActionsHandle]


class StoryError(ValueError):
    """A story cannot be played at all (a custom action and no action package), with why."""


@dataclass
class StoryResult:
    """One story played: the actions compared, and its first difference, if any."""

    story: Story
    actions: list[tuple[str, str]] = field(default_factory=list)  # (expected, predicted)
    failed_at: int | None = None  # index of the step; len(steps) for the end of the story
    comment: str = ""  # "predicted: ..." for that step
    listen_before: bool = False  # the difference is an action_listen expected before the step
    not_reached: int = 0  # story actions after the difference
    loops_completed: int = 0  # short-written forms completed as the story says
    nlu_misses: dict[int, str] = field(default_factory=dict)  # step → "predicted: ..."
    events: list[Event] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failed_at is None and not self.nlu_misses

    @property
    def first_difference(self) -> tuple[int, str] | None:
        """The step and comment of the story's first difference (None if it passed)."""
        found = dict(self.nlu_misses)
        if self.failed_at is not None:
            found.setdefault(self.failed_at, self.comment)
        return min(found.items(), default=None)


class _Failed(Exception):
    """The story differs here: stop comparing it."""


class StoryTester:
    """Plays test stories through a `DialogueEngine`."""

    def __init__(
        self,
        project: Project,
        predictor: Predictor,
        *,
        nlu: NluHandle | None = None,
        actions: ActionsHandle | None = None,
        seed: int = 0,
    ) -> None:
        self.project = project
        self.domain = project.domain
        self.predictor = predictor
        self.nlu = nlu
        self.actions = actions
        self.seed = seed
        self.domain_dict = domain_as_dict(project.domain)

    async def run(self, stories: Sequence[Story]) -> list[StoryResult]:
        return [await self.play(story, index) for index, story in enumerate(stories)]

    async def play(self, story: Story, index: int = 0) -> StoryResult:
        engine = DialogueEngine(self.domain, self.predictor, rng=random.Random(self.seed))
        play = _Play(self, engine, story, f"test-story-{index}")
        await play.run()
        return play.result


class _Play:
    """One story through the engine, compared step by step."""

    def __init__(self, tester: StoryTester, engine: DialogueEngine, story: Story, cid: str):
        self.tester = tester
        self.engine = engine
        self.story = story
        self.conv = Conversation.new(cid, tester.domain)
        self.defaults = engine.slot_defaults
        self.pos = 0  # the next event not compared yet
        self.window = 0  # where the events of the latest action (or user turn) begin
        self.turns = 0
        self.now = START_TIME
        self.result = StoryResult(story)

    async def run(self) -> None:
        steps = self.story.steps
        try:
            for index, step in enumerate(steps):
                await self._step(index, step)
            if self.turns:
                self._expect_listen(len(steps))
        except _Failed:
            pass
        self.result.events = list(self.conv.events)

    def _fail(self, index: int, comment: str, *, listen_before: bool = False) -> _Failed:
        self.result.failed_at = index
        self.result.comment = comment
        self.result.listen_before = listen_before
        later = self.story.steps[index + (0 if listen_before else 1) :]
        self.result.not_reached = sum(isinstance(s, ActionStep) for s in later)
        self.result.not_reached += 1 if self.turns and not listen_before else 0
        return _Failed()

    async def _step(self, index: int, step: Step) -> None:
        match step:
            case UserStep():
                await self._user(index, step)
            case OrStep():
                users = [a for a in step.alternatives if isinstance(a, UserStep)]
                if users:
                    await self._user(index, users[0], alternatives=users)
                else:
                    self._slots(index, [a for a in step.alternatives if isinstance(a, SlotStep)])
            case ActionStep():
                self._action(index, step)
            case SlotStep():
                self._slots(index, [step])
            case LoopStep():
                await self._loop(index, step)
            case CheckpointStep():
                pass

    # -- user turns -----------------------------------------------------------------------

    async def _user(
        self, index: int, step: UserStep, alternatives: Sequence[UserStep] = ()
    ) -> None:
        if self.turns:
            self._expect_listen(index)
        parse = _story_parse(step)
        nlu = self.tester.nlu
        if nlu is not None and step.text:
            (parsed,) = await nlu.parse([step.text])
            expected = {s.intent for s in alternatives or [step] if s.intent}
            got = (parsed.get("intent") or {}).get("name")
            missing = _entity_set(parse["entities"]) - _entity_set(parsed.get("entities") or [])
            if expected and got not in expected:
                self.result.nlu_misses[index] = f"predicted: {got}: {step.text}"
            elif missing:
                found = sorted(_entity_set(parsed.get("entities") or []))
                self.result.nlu_misses[index] = f"predicted entities: {found}"
            parse = parsed
        self.turns += 1
        self.now += 1.0
        user = UserUttered(
            timestamp=self.now,
            text=step.text or _intent_text(step),
            parse_data=parse,
            input_channel="test",
            message_id=f"{self.conv.conversation_id}-{self.turns}",
        )
        result = self.engine.on_user_message(self.conv, user, self.now)
        at = next(
            i for i in range(len(self.conv.events) - 1, -1, -1) if self.conv.events[i] is user
        )
        await self._settle(result)
        self.pos = self.window = at + 1

    async def _settle(self, result: TurnResult) -> None:
        """Run the custom actions the turn waits on until it is complete."""
        while result.action_requests:
            pending = self.conv.pending
            assert pending is not None
            actions = self.tester.actions
            if actions is None:
                raise StoryError(
                    f"story '{self.story.name}' ({self.story.source}) needs the custom action "
                    f"'{pending.action}': no action package (pass --actions PACKAGE, or put it "
                    "in <project>/actions)"
                )
            state, events = with_provisional(
                self.conv.state, self.conv.events, pending.provisional, self.defaults
            )
            request = ActionRequest(
                conversation_id=self.conv.conversation_id,
                message_id=pending.request_id,
                sent_at=datetime.fromtimestamp(self.now, UTC),
                next_action=pending.action,
                tracker=current_state(self.conv.conversation_id, state, events, Verbosity.ALL),
                domain=self.tester.domain_dict,
                version=RASA_VERSION,
            )
            answer = await actions.run(request)
            if answer.status not in ("success", "rejected"):
                logger.warning(
                    "story '%s': action %s %s: %s",
                    self.story.name,
                    pending.action,
                    answer.status,
                    answer.error,
                )
            result = self.engine.on_action_result(
                self.conv,
                pending.request_id,
                answer.status,
                list(answer.events),
                list(answer.responses),
                self.now,
                answer.error,
            )

    # -- actions --------------------------------------------------------------------------

    def _next_action(self) -> int | None:
        """The index of the next action the bot ran (session starts aside)."""
        for i in range(self.pos, len(self.conv.events)):
            event = self.conv.events[i]
            if type(event) is ActionExecuted and event.name != ACTION_SESSION_START:
                return i
        return None

    def _predicted(self, at: int | None) -> str:
        if at is None:
            return "None"
        event = self.conv.events[at]
        assert isinstance(event, ActionExecuted)
        return event.name or event.action_text or "None"

    def _match(self, expected: str) -> tuple[int | None, bool]:
        at = self._next_action()
        predicted = self._predicted(at)
        self.result.actions.append((expected, predicted))
        if at is not None and predicted == expected:
            self.pos = self.window = at + 1
            return at, True
        return at, False

    def _expect_listen(self, index: int) -> None:
        at, ok = self._match(ACTION_LISTEN)
        if not ok:
            raise self._fail(index, f"predicted: {self._predicted(at)}", listen_before=True)

    def _action(self, index: int, step: ActionStep) -> None:
        expected = step.name or step.text or ""
        at, ok = self._match(expected)
        if not ok:
            raise self._fail(index, f"predicted: {self._predicted(at)}")

    # -- slots and loops ------------------------------------------------------------------

    def _window(self) -> tuple[list[Event], TrackerState]:
        """The events since the latest action (up to the next one), and the tracker there."""
        end = self._next_action()
        end = len(self.conv.events) if end is None else end
        return self.conv.events[self.window : end], replay(self.conv.events[:end], self.defaults)

    def _slots(self, index: int, alternatives: Sequence[SlotStep]) -> None:
        events, state = self._window()
        problems: list[str] = []
        for step in alternatives:
            problems = []
            for name, value in step.slots:
                set_to = [e.value for e in events if isinstance(e, SlotSet) and e.name == name]
                if name in step.any_value:
                    if set_to or state.slots.get(name) is not None:
                        continue
                elif (set_to and set_to[-1] == value) or state.slots.get(name) == value:
                    continue
                actual = set_to[-1] if set_to else state.slots.get(name)
                problems.append(f"{name}: {json.dumps(actual, default=str)}")
            if not problems:
                return
        raise self._fail(index, "predicted: slot_was_set " + ", ".join(problems))

    async def _loop(self, index: int, step: LoopStep) -> None:
        events, state = self._window()
        if any(isinstance(e, ActiveLoop) and e.name == step.name for e in events):
            return
        active = state.active_loop_name
        if active == step.name:
            return
        at = self._next_action()
        if step.name is None and at is not None and self._predicted(at) == ACTION_LISTEN:
            # `active_loop: <form>` then `active_loop: null`: the form's filling is not written
            # out. End the loop as the story says and predict on (Rasa applies the story's own
            # events here).
            del self.conv.events[at:]
            self.conv.state = replay(self.conv.events, self.defaults)
            for event in (ActiveLoop(name=None), SlotSet(name=REQUESTED_SLOT, value=None)):
                event = event.model_copy(update={"timestamp": self.now})
                self.conv.state = apply(self.conv.state, event, self.conv.events, self.defaults)
                self.conv.events.append(event)
            self.result.loops_completed += 1
            await self._settle(self.engine.resume(self.conv, self.now))
            return
        raise self._fail(index, f"predicted: active_loop: {active or 'null'}")


def _story_parse(step: UserStep) -> dict[str, Any]:
    """Parse data from the story itself: its intent and entities."""
    entities: list[dict[str, Any]] = []
    if step.annotations:
        for a in step.annotations:
            entity: dict[str, Any] = {
                "entity": a.entity,
                "start": a.start,
                "end": a.end,
                "value": a.value,
            }
            entity.update({k: v for k, v in (("role", a.role), ("group", a.group)) if v})
            entities.append(entity)
    else:
        roles = list(step.entity_roles)
        for name, value in step.entities:
            entity = {"entity": name, "value": "" if value is None else value}
            match = next((r for r in roles if r[0] == name), None)
            if match is not None:
                roles.remove(match)
                entity.update({k: v for k, v in (("role", match[1]), ("group", match[2])) if v})
            entities.append(entity)
    intent: dict[str, Any] = {"name": None, "confidence": 0.0}
    if step.intent:
        name = step.intent.strip().removeprefix("/")
        base, _, key = name.partition("/")
        intent = {"name": base, "confidence": 1.0}
        if key:
            intent["full_retrieval_intent_name"] = name
    return {
        "text": step.text or _intent_text(step),
        "intent": intent,
        "entities": entities,
        "intent_ranking": [intent] if step.intent else [],
    }


def _intent_text(step: UserStep) -> str:
    return f"/{step.intent}" if step.intent else ""


def _entity_set(entities: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(str(e.get("entity")), str(e.get("value"))) for e in entities}


# -- reports --------------------------------------------------------------------------------


def _quote(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _annotated(step: UserStep) -> str:
    text = step.text or ""
    out, last = [], 0
    for a in sorted(step.annotations, key=lambda a: a.start):
        out.append(text[last : a.start])
        marked = text[a.start : a.end]
        extra = {k: v for k, v in (("role", a.role), ("group", a.group)) if v}
        if a.value == marked and not extra:
            out.append(f"[{marked}]({a.entity})")
        else:
            spec = {
                "entity": a.entity,
                **({"value": a.value} if a.value != marked else {}),
                **extra,
            }
            out.append(f"[{marked}]{json.dumps(spec, ensure_ascii=False)}")
        last = a.end
    out.append(text[last:])
    return "".join(out)


def _step_lines(step: Step, comment: str = "") -> list[str]:
    tail = f"  # {comment}" if comment else ""
    match step:
        case UserStep():
            lines = []
            if step.intent:
                lines.append(f"  - intent: {step.intent}{tail}")
            if step.text is not None:
                key = "    user" if step.intent else "  - user"
                lines.append(f"{key}: {_quote(_annotated(step))}{'' if step.intent else tail}")
            if step.entities and not step.annotations:
                lines.append("    entities:")
                lines += [f"    - {name}: {_quote(value)}" for name, value in step.entities]
            return lines
        case ActionStep():
            if step.name:
                return [f"  - action: {step.name}{tail}"]
            return [f"  - bot: {_quote(step.text)}{tail}"]
        case SlotStep():
            lines = [f"  - slot_was_set:{tail}"]
            for name, value in step.slots:
                lines.append(
                    f"    - {name}" if name in step.any_value else f"    - {name}: {_quote(value)}"
                )
            return lines
        case LoopStep():
            return [f"  - active_loop: {step.name or 'null'}{tail}"]
        case CheckpointStep():
            return [f"  - checkpoint: {step.name}{tail}"]
        case OrStep():
            lines = [f"  - or:{tail}"]
            for alternative in step.alternatives:
                lines += ["  " + line for line in _step_lines(alternative)]
            return lines
    return []


def failed_stories_yaml(results: Sequence[StoryResult]) -> str:
    """The failed stories in Rasa's `failed_test_stories.yml` format."""
    lines = ['version: "3.1"', "stories:" if any(not r.passed for r in results) else "stories: []"]
    for result in results:
        if result.passed:
            continue
        story = result.story
        lines += [f"- story: {story.name} ({story.source.file})", "  steps:"]
        for index, step in enumerate(story.steps):
            missed = result.nlu_misses.get(index, "")
            if index == result.failed_at and result.listen_before:
                lines.append(f"  - action: {ACTION_LISTEN}  # {result.comment}")
                lines += _step_lines(step, missed)
            elif index == result.failed_at:
                lines += _step_lines(step, result.comment)
            else:
                lines += _step_lines(step, missed)
        if result.failed_at == len(story.steps):
            lines.append(f"  - action: {ACTION_LISTEN}  # {result.comment}")
    return "\n".join(lines) + "\n"


def story_report(results: Sequence[StoryResult], nlu: str) -> dict[str, Any]:
    """Rasa's `story_report.json`: precision, recall, F1 and support per action, accuracy,
    macro and weighted averages, and `conversation_accuracy`; Parley adds `parley`."""
    pairs = [pair for r in results for pair in r.actions]
    labels = sorted({label for pair in pairs for label in pair})
    report: dict[str, Any] = {}
    for label in labels:
        tp = sum(1 for e, p in pairs if e == label and p == label)
        predicted = sum(1 for _, p in pairs if p == label)
        support = sum(1 for e, _ in pairs if e == label)
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[label] = {
            "precision": precision,
            "recall": recall,
            "f1-score": f1,
            "support": support,
        }
    total = len(pairs)
    report["accuracy"] = sum(1 for e, p in pairs if e == p) / total if total else 0.0
    scored = [report[label] for label in labels if report[label]["support"]]
    for name, weight in (("macro avg", None), ("weighted avg", True)):
        norm = sum(s["support"] for s in scored) if weight else len(scored)
        report[name] = {
            key: (
                sum(s[key] * (s["support"] if weight else 1) for s in scored) / norm
                if norm
                else 0.0
            )
            for key in ("precision", "recall", "f1-score")
        }
        report[name]["support"] = total
    correct = sum(1 for r in results if r.passed)
    report["conversation_accuracy"] = {
        "accuracy": correct / len(results) if results else 0.0,
        "correct": correct,
        "with_warnings": 0,
        "total": len(results),
    }
    report["parley"] = {
        "nlu": nlu,
        "actions_not_reached": sum(r.not_reached for r in results),
        "loops_completed_as_written": sum(r.loops_completed for r in results),
        "failed_stories": [
            {
                "story": r.story.name,
                "file": str(r.story.source.file),
                "line": r.story.source.line,
                "step": difference[0],
                "comment": difference[1],
            }
            for r in results
            if (difference := r.first_difference) is not None
        ],
    }
    return report


# -- the command ----------------------------------------------------------------------------


def add_test_stories(targets: Any, backends: StoryBackends) -> None:
    """Register `parley test stories` on the `test` command's subparsers."""
    parser = targets.add_parser(
        "stories",
        help="play the test stories end to end (NLU, policies, forms, custom actions)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--project", default=".", help="the project folder (default: .)")
    parser.add_argument(
        "--model",
        default=None,
        help="archive, or models folder (its newest archive): its NLU parses the user texts "
        "and its policies predict (default: the stories' own intents, policies trained now)",
    )
    parser.add_argument(
        "--actions",
        default=None,
        help="the action package (a folder or module; default: <project>/actions if it exists)",
    )
    parser.add_argument("--out", type=Path, default=Path("results"), help="default: results/")

    def run(args: argparse.Namespace, settings: object) -> int:
        return run_test_stories(args, backends)

    parser.set_defaults(func=run)


def _predictor(project: Project, model: Path | None) -> tuple[Predictor, str]:
    if model is not None and ENSEMBLE_MEMBER in read_members(model, (ENSEMBLE_MEMBER,)):
        return load_ensemble(model, project).as_predictor(), f"policies of {model}"
    return train_core(project).ensemble.as_predictor(), "policies trained on the project now"


def run_test_stories(args: argparse.Namespace, backends: StoryBackends) -> int:
    root = Path(args.project)
    try:
        project = load_project(root)
    except ProjectError as exc:
        print(f"parley test stories: {exc}", file=sys.stderr)
        return 1
    if not project.test_stories:
        print(f"parley test stories: {root} has no test stories (tests/*.yml)", file=sys.stderr)
        return 2
    actions: ActionsHandle | None = None
    try:
        model = resolve_model(args.model) if args.model else None
        predictor, policies = _predictor(project, model)
        nlu = backends.open_nlu(model) if model is not None else None
        package = Path(args.actions) if args.actions else root / "actions"
        if args.actions or package.is_dir():
            actions = backends.open_actions(package)
    except (ArchiveError, ValueError, ParleyError) as exc:
        print(f"parley test stories: {exc}", file=sys.stderr)
        return 2
    if nlu is None:
        nlu_note = "no NLU model: the stories' own intents and entities were used"
    else:
        nlu_note = f"user texts parsed by the NLU model of {model}"
    tester = StoryTester(project, predictor, nlu=nlu, actions=actions)
    try:
        results = asyncio.run(tester.run(project.test_stories))
    except StoryError as exc:
        print(f"parley test stories: {exc}", file=sys.stderr)
        return 2
    finally:
        if actions is not None:
            actions.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "failed_test_stories.yml").write_text(failed_stories_yaml(results))
    report = story_report(results, nlu_note)
    (out / "story_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(render_summary(results, report, policies))
    print(f"reports in {out}/")
    return 0 if all(r.passed for r in results) else 1


def render_summary(results: Sequence[StoryResult], report: dict[str, Any], policies: str) -> str:
    conversations = report["conversation_accuracy"]
    pairs = [pair for r in results for pair in r.actions]
    right = sum(1 for e, p in pairs if e == p)
    lines = [
        f"stories: {conversations['correct']}/{conversations['total']} correct "
        f"({100 * conversations['accuracy']:.1f}%)",
        f"actions: {right}/{len(pairs)} correct ({100 * report['accuracy']:.1f}%)"
        + (
            f", {report['parley']['actions_not_reached']} not reached"
            if report["parley"]["actions_not_reached"]
            else ""
        ),
        f"NLU: {report['parley']['nlu']}",
        f"policies: {policies}",
    ]
    for failed in report["parley"]["failed_stories"]:
        lines.append(
            f"  FAILED {failed['story']} ({failed['file']}:{failed['line']}): {failed['comment']}"
        )
    return "\n".join(lines)
