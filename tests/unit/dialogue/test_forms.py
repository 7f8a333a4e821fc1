"""Forms (Rasa 3.x's `FormAction`) in the dialogue engine: formbot with its real policies and
its real `validate_restaurant_form` (rasa-sdk, in process) behind the real dialogue and
actions handlers, and a small bot with scripted answers for what formbot does not use
(`requested_slot` from the validation, `action_ask_<slot>`, failures)."""

from __future__ import annotations

import json
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from schemas.envelopes import ActionRequest, ActionResult, OutboundMessage, ParsedUserMessage
from schemas.events import (
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    DefinePrevUserUtteredFeaturization,
    Event,
    SlotSet,
    UserUttered,
    parse_events,
)
from schemas.project.domain import Domain
from schemas.project.loader import Project, load_project
from schemas.topics import Topic
from services.actions.executor import ActionRunner
from services.actions.registry import ActionRegistry
from services.actions.worker import ActionsService
from services.common.bus import Publication
from services.dialogue.domain_dict import domain_as_dict
from services.dialogue.engine import DialogueEngine, PendingAction, Prediction, Predictor
from services.dialogue.forms import FormRun
from services.dialogue.handlers import DialogueService
from services.dialogue.policies.ensemble import PolicyEnsemble
from services.dialogue.store.memory_store import MemoryHotStore
from services.dialogue.store.migrate import migrate
from services.dialogue.store.sql_archive import SqlArchive
from services.dialogue.tracker import TrackerState
from services.dialogue.training_data import story_trackers, training_trackers
from tests.support.clock import FakeClock

Answer = Callable[[ActionRequest], Awaitable[ActionResult]]


def show(event: Event) -> str:
    """A short form of an event for assertions."""
    match event:
        case UserUttered():
            return f"user:{event.intent_name}"
        case ActionExecuted():
            return f"action:{event.name}"
        case SlotSet():
            return f"slot:{event.name}={event.value}"
        case ActiveLoop():
            return f"loop:{event.name}"
        case BotUttered():
            return f"bot:{event.text}"
    return f"{event.to_dict()['event']}:{event.to_dict().get('name')}"


class Bot:
    """One conversation through `DialogueService`; action requests are answered by `answer`
    and the results handled until the turn is complete."""

    def __init__(self, service: DialogueService, hot: MemoryHotStore, answer: Answer) -> None:
        self.service = service
        self.hot = hot
        self.answer = answer
        self.requests: list[ActionRequest] = []
        self.count = 0
        self.cid = "diner"

    @property
    def events(self) -> list[Event]:
        stored = self.hot.data.get(self.cid)
        return parse_events(stored.events) if stored else []

    async def say(self, intent: str, text: str | None = None, **entities: Any) -> list[str]:
        self.count += 1
        now = self.service.clock.now()
        event = UserUttered(
            timestamp=now.timestamp(),
            text=text or intent,
            input_channel="rest",
            parse_data={
                "intent": {"name": intent, "confidence": 1.0},
                "entities": [{"entity": k, "value": v} for k, v in entities.items()],
                "text": text or intent,
            },
        )
        return await self.send(event)

    async def send(self, event: UserUttered) -> list[str]:
        before = len(self.events)
        message = ParsedUserMessage(
            conversation_id=self.cid,
            message_id=f"m{len(self.events)}-{self.count}",
            sent_at=self.service.clock.now(),
            event=event,
        )
        pubs = await self.service.handle(message)
        for _ in range(20):
            requests = [p.message for p in pubs if p.topic == Topic.ACTIONS]
            if not requests:
                break
            (request,) = requests
            assert isinstance(request, ActionRequest)
            # rasa-sdk's tracker appends to the request's event list: keep what was sent
            self.requests.append(request.model_copy(deep=True))
            pubs = await self.service.handle(await self.answer(request))
        else:
            pytest.fail("the turn never completed")
        outbound = [p.message for p in pubs if p.topic == Topic.OUTBOUND]
        assert isinstance(outbound[-1], OutboundMessage)
        assert outbound[-1].turn_complete
        # the ensemble's featurization hints are not what these tests look at
        new = self.events[before:]
        return [show(e) for e in new if not isinstance(e, DefinePrevUserUtteredFeaturization)]


async def service_for(
    tmp_path: Path, domain: Domain, predictor: Predictor
) -> AsyncIterator[tuple[DialogueService, MemoryHotStore]]:
    tmp_path.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a test's temporary folder)
    url = f"sqlite+aiosqlite:///{tmp_path / 'archive.db'}"
    await migrate(url)
    async with SqlArchive(url) as archive:
        hot = MemoryHotStore()
        engine = DialogueEngine(domain, predictor, rng=random.Random(0))
        yield DialogueService(engine, hot, archive, FakeClock(), domain_as_dict(domain)), hot


# -- formbot ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def formbot(shared_dir: Path) -> Project:
    root = shared_dir / "examples" / "rasa" / "formbot"
    if not (root / "domain.yml").is_file():
        pytest.fail(f"{root} is missing: formbot is needed here")
    return load_project(root)


@pytest.fixture(scope="module")
def ensemble(formbot: Project) -> PolicyEnsemble:
    trained = PolicyEnsemble.from_config(formbot.config)
    trained.train(training_trackers(formbot), formbot.domain)
    return trained


@pytest.fixture(scope="module")
def runner(shared_dir: Path) -> Iterator[ActionRunner]:
    """formbot's action package, loaded by the actions worker's registry (rasa-sdk)."""
    saved_path = list(sys.path)
    registry = ActionRegistry(str(shared_dir / "examples" / "rasa" / "formbot" / "actions"))
    registry.load()
    assert registry.names() == ["validate_restaurant_form"]
    action_runner = ActionRunner(registry)
    yield action_runner
    action_runner.close()
    sys.path[:] = saved_path
    for name in [n for n in sys.modules if n.split(".")[0] == registry.package]:
        del sys.modules[name]


@pytest.fixture
async def bot(
    tmp_path: Path, formbot: Project, ensemble: PolicyEnsemble, runner: ActionRunner
) -> AsyncIterator[Bot]:
    actions = ActionsService(runner, FakeClock())

    async def answer(request: ActionRequest) -> ActionResult:
        (pub,) = await actions.handle(request)
        assert isinstance(pub, Publication)
        assert isinstance(pub.message, ActionResult)
        return pub.message

    async for service, hot in service_for(tmp_path, formbot.domain, ensemble.as_predictor()):
        yield Bot(service, hot, answer)


ASK = {
    "cuisine": "bot:What cuisine?",
    "num_people": "bot:How many people?",
    "outdoor_seating": "bot:Do you want to sit outside?",
    "preferences": "bot:Please provide additional preferences",
    "feedback": "bot:Please give your feedback on your experience so far",
}


def asks(slot: str) -> list[str]:
    return ["action:restaurant_form", f"slot:requested_slot={slot}", ASK[slot], LISTEN]


LISTEN = "action:action_listen"
SUBMIT = [
    "slot:requested_slot=None",
    "loop:None",
    "action:utter_submit",
    "bot:All done!",
    "action:utter_slots_values",
]


async def test_the_form_asks_each_slot_in_order_validates_and_submits(bot: Bot) -> None:
    assert await bot.say("greet") == [
        "action:action_session_start", "session_started:None", LISTEN,
        "user:greet", "action:utter_greet", "bot:Hello! I am restaurant search assistant! "
        "How can I help?", LISTEN,
    ]  # fmt: skip
    assert await bot.say("request_restaurant") == [
        "user:request_restaurant",
        "action:restaurant_form",
        "loop:restaurant_form",
        "slot:requested_slot=cuisine",
        ASK["cuisine"],
        LISTEN,
    ]
    # the validation action rejects the value: the slot is reset and asked again
    assert await bot.say("inform", cuisine="klingon") == [
        "user:inform",
        "slot:cuisine=klingon",
        "action:restaurant_form",
        "bot:Cuisine type is not in the database, please try again",
        "slot:cuisine=None",
        "slot:requested_slot=cuisine",
        ASK["cuisine"],
        LISTEN,
    ]
    assert await bot.say("inform", cuisine="italian") == [
        "user:inform", "slot:cuisine=italian", "action:restaurant_form", "slot:cuisine=italian",
        "slot:requested_slot=num_people", ASK["num_people"], LISTEN,
    ]  # fmt: skip
    assert (await bot.say("inform", number="-2"))[3:5] == [
        "bot:Number of people should be a positive integer, please try again",
        "slot:num_people=None",
    ]
    assert await bot.say("inform", number="2") == [
        "user:inform", "slot:num_people=2", "action:restaurant_form", "slot:num_people=2",
        "slot:requested_slot=outdoor_seating", ASK["outdoor_seating"], LISTEN,
    ]  # fmt: skip
    assert (await bot.say("affirm"))[:4] == [
        "user:affirm", "slot:outdoor_seating=True", "action:restaurant_form",
        "slot:outdoor_seating=True",
    ]  # fmt: skip
    assert (await bot.say("deny"))[-3:] == ["slot:requested_slot=feedback", ASK["feedback"], LISTEN]
    done = await bot.say("inform", "great food")
    assert done[:3] == ["user:inform", "slot:feedback=great food", "action:restaurant_form"]
    # completion: requested_slot and the loop are reset, then the rule submits
    assert done[3:] == [
        "slot:feedback=great food",
        *SUBMIT,
        "bot:I am going to run a restaurant search using the following parameters:\n"
        " - cuisine: italian\n - num_people: 2\n - outdoor_seating: True\n"
        " - preferences: no additional preferences\n - feedback: great food",
        LISTEN,
    ]
    # what the validation action saw: the tracker plus the form's provisional events
    last = bot.requests[-1]
    assert last.next_action == "validate_restaurant_form"
    tail = [show(e) for e in parse_events(last.tracker["events"][-3:])]
    assert tail == [
        "slot:requested_slot=feedback", "action:restaurant_form", "slot:feedback=great food",
    ]  # fmt: skip
    assert last.tracker["latest_action_name"] == "restaurant_form"
    assert last.tracker["active_loop"]["name"] == "restaurant_form"


async def test_activation_validates_prefilled_slots_and_asks_the_first_missing(bot: Bot) -> None:
    await bot.say("greet")
    turn = await bot.say("request_restaurant", cuisine="chinese", number="4")
    assert turn == [
        "user:request_restaurant",
        "slot:cuisine=chinese",
        "slot:num_people=4",
        "action:restaurant_form",
        "loop:restaurant_form",
        "slot:cuisine=chinese",
        "slot:num_people=4",
        "slot:requested_slot=outdoor_seating",
        ASK["outdoor_seating"],
        LISTEN,
    ]
    (request,) = bot.requests
    tracker = request.tracker
    tail = [show(e) for e in parse_events(tracker["events"][-5:])]
    assert tail == [
        "slot:requested_slot=None",
        "action:restaurant_form",
        "loop:restaurant_form",
        "slot:cuisine=chinese",
        "slot:num_people=4",
    ]
    assert tracker["active_loop"]["name"] == "restaurant_form"
    # the stored conversation has none of the provisional events twice
    assert [show(e) for e in bot.events].count("loop:restaurant_form") == 1


async def test_an_invalid_prefilled_slot_is_asked_for(bot: Bot) -> None:
    await bot.say("greet")
    turn = await bot.say("request_restaurant", cuisine="klingon")
    assert turn[2:] == [
        "action:restaurant_form",
        "loop:restaurant_form",
        "bot:Cuisine type is not in the database, please try again",
        "slot:cuisine=None",
        "slot:requested_slot=cuisine",
        ASK["cuisine"],
        LISTEN,
    ]


async def test_a_rejected_form_lets_the_rules_take_the_unhappy_path(bot: Bot) -> None:
    await bot.say("greet")
    await bot.say("request_restaurant")
    # chitchat is ignored by the form: nothing fills cuisine, the form rejects
    assert await bot.say("chitchat") == [
        "user:chitchat",
        "action_execution_rejected:restaurant_form",
        "action:utter_chitchat",
        "bot:chitchat",
        *asks("cuisine"),
    ]
    # stop: rejected, the story asks whether to continue; deny deactivates the form
    stop = await bot.say("stop")
    assert stop[:2] == ["user:stop", "action_execution_rejected:restaurant_form"]
    assert stop[-3:] == ["action:utter_ask_continue", "bot:Do you want to continue?", LISTEN]
    assert await bot.say("deny") == [
        "user:deny",
        "action:action_deactivate_loop",
        "loop:None",
        "slot:requested_slot=None",
        LISTEN,
    ]


# The fill-in answers for the turns a test story leaves out (`rasa test` skips a form's turns).
FILL: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    "cuisine": ("inform", None, {"cuisine": "greek"}),
    "num_people": ("inform", None, {"number": "3"}),
    "outdoor_seating": ("affirm", None, {}),
    "preferences": ("deny", None, {}),
    "feedback": ("inform", "lovely", {}),
}


async def test_formbot_test_stories_play_through_the_engine(
    tmp_path: Path, formbot: Project, ensemble: PolicyEnsemble, runner: ActionRunner
) -> None:
    actions = ActionsService(runner, FakeClock())

    async def answer(request: ActionRequest) -> ActionResult:
        (pub,) = await actions.handle(request)
        assert isinstance(pub.message, ActionResult)
        return pub.message

    stories = story_trackers(formbot.test_stories, formbot.domain)
    assert len(stories) == 3
    checked = 0
    for index, story in enumerate(stories):
        async for service, hot in service_for(
            tmp_path / str(index), formbot.domain, ensemble.as_predictor()
        ):
            bot = Bot(service, hot, answer)
            ran: list[str] = []
            for user, rest in _turns(story.events):
                ran += await bot.send(user)
                if not any(isinstance(e, ActiveLoop) and e.name is None for e in rest):
                    continue
                # the story's form ends in this turn: its left-out turns are filled in, only
                # the one that completes it shows (the story's `active_loop: null`)
                while _requested(bot) is not None:
                    intent, text, entities = FILL[str(_requested(bot))]
                    turn = await bot.say(intent, text, **entities)
                    if "loop:None" in turn:
                        ran += turn
            wanted = _collapse([show(e) for e in story.events])
            assert _collapse(ran) == wanted, story.name
            checked += len(wanted)
            final = TrackerState.from_json(hot.data[bot.cid].snapshot["tracker"])
            assert final.active_loop_name is None
            assert final.get_slot("cuisine") == "greek"
    assert checked == 7 + 7 + 9


def _turns(events: Sequence[Event]) -> list[tuple[UserUttered, list[Event]]]:
    turns: list[tuple[UserUttered, list[Event]]] = []
    for event in events:
        if isinstance(event, UserUttered):
            turns.append((event, []))
        elif turns:
            turns[-1][1].append(event)
    return turns


def _collapse(steps: list[str]) -> list[str]:
    """The actions and loop events, the form's runs while it is active collapsed into the
    one a test story writes (its turns until `active_loop: null` are left out)."""
    out: list[str] = []
    skip = ("action:action_listen", "action:action_session_start")
    for step in steps:
        if not step.startswith(("action:", "loop:")) or step in skip:
            continue
        if (
            step == "action:restaurant_form"
            and out
            and out[-1]
            in (
                "action:restaurant_form",
                "loop:restaurant_form",
            )
        ):
            continue
        out.append(step)
    return out


def _requested(bot: Bot) -> Any:
    stored = bot.hot.data[bot.cid]
    state = TrackerState.from_json(stored.snapshot["tracker"])
    return state.get_slot("requested_slot") if state.active_loop_name else None


# -- a small bot with scripted action answers ---------------------------------------------

SMALL = """version: "3.1"
intents: [start, inform, skip]
entities: [a, b]
slots:
  a:
    type: text
    mappings: [{type: from_entity, entity: a}]
  b:
    type: text
    mappings: [{type: from_entity, entity: b}]
responses:
  utter_ask_a: [{text: "A?"}]
  utter_done: [{text: "Done with {a} and {b}"}]
  utter_sorry: [{text: "Sorry"}]
  utter_default: [{text: "Oops"}]
actions: [validate_ab_form, action_ask_b]
forms:
  ab_form:
    required_slots: [a, b]
"""


class FormScript:
    """The form while it is active (and not just rejected), `utter_done` after it ends."""

    def predict(
        self,
        events: Sequence[Event],
        state: TrackerState,
        domain: Domain,
        initial: TrackerState | None = None,
    ) -> Prediction:
        last = state.latest_action_name
        if events and events[-1].to_dict()["event"] == "action_execution_rejected":
            return Prediction("utter_sorry", 1.0, "Script")
        if last == "action_listen":
            intent = (state.latest_message or {}).get("intent", {}).get("name")
            if state.active_loop_name or intent == "start":
                return Prediction("ab_form", 1.0, "Script")
            return Prediction("action_listen", 1.0, "Script")
        if last == "ab_form" and not state.active_loop_name:
            return Prediction("utter_done", 1.0, "Script")
        return Prediction("action_listen", 1.0, "Script")


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[tuple[DialogueService, MemoryHotStore]]:
    root = tmp_path / "bot"
    root.mkdir()
    (root / "domain.yml").write_text(SMALL)
    (root / "config.yml").write_text("language: en\n")
    domain = load_project(root).domain
    async for pair in service_for(tmp_path, domain, FormScript()):
        yield pair


def scripted(
    table: dict[str, Callable[[ActionRequest], tuple[str, list[Event], list[dict[str, Any]]]]],
) -> Answer:
    async def answer(request: ActionRequest) -> ActionResult:
        status, events, responses = table[request.next_action](request)
        return ActionResult(
            conversation_id=request.conversation_id,
            sent_at=request.sent_at,
            request_id=request.message_id,
            action_name=request.next_action,
            status=status,  # type: ignore[arg-type]
            events=events,  # type: ignore[arg-type]
            responses=responses,
        )

    return answer


def slot(name: str, value: Any) -> SlotSet:
    return SlotSet(name=name, value=value)


async def test_requested_slot_from_the_validation_overrides_the_order(
    small: tuple[DialogueService, MemoryHotStore],
) -> None:
    def validate(request: ActionRequest) -> tuple[str, list[Event], list[dict[str, Any]]]:
        slots = request.tracker["slots"]
        # custom required slots: b first, then a; done when both are set
        nxt = "b" if slots["b"] is None else "a" if slots["a"] is None else None
        return "success", [slot("requested_slot", nxt)], []

    def ask_b(request: ActionRequest) -> tuple[str, list[Event], list[dict[str, Any]]]:
        assert request.tracker["active_loop"]["name"] == "ab_form"
        return "success", [slot("a", None)], [{"text": "B, please?"}]

    bot = Bot(*small, scripted({"validate_ab_form": validate, "action_ask_b": ask_b}))
    assert (await bot.say("start"))[3:] == [
        "user:start",
        "action:ab_form",
        "loop:ab_form",
        "slot:requested_slot=b",  # from the validation, so the form adds none
        "bot:B, please?",  # action_ask_b: its responses, then its events
        "slot:a=None",
        LISTEN,
    ]
    assert [r.next_action for r in bot.requests] == ["validate_ab_form", "action_ask_b"]
    ask = bot.requests[1].tracker
    assert [show(e) for e in parse_events(ask["events"][-4:])] == [
        "slot:requested_slot=None", "action:ab_form", "loop:ab_form", "slot:requested_slot=b",
    ]  # fmt: skip
    assert await bot.say("inform", b="x") == [
        "user:inform", "slot:b=x", "action:ab_form", "slot:requested_slot=a", "slot:b=x",
        "bot:A?", LISTEN,
    ]  # fmt: skip
    assert await bot.say("inform", a="y") == [
        "user:inform", "slot:a=y", "action:ab_form", "slot:requested_slot=None", "slot:a=y",
        "slot:requested_slot=None", "loop:None", "action:utter_done", "bot:Done with y and x",
        LISTEN,
    ]  # fmt: skip


async def test_the_validation_can_end_the_form_and_can_reject_it(
    small: tuple[DialogueService, MemoryHotStore],
) -> None:
    def validate(request: ActionRequest) -> tuple[str, list[Event], list[dict[str, Any]]]:
        intent = request.tracker["latest_message"]["intent"]["name"]
        if intent == "skip":
            return "rejected", [], []
        return "success", [], []

    bot = Bot(*small, scripted({"validate_ab_form": validate}))
    assert (await bot.say("start"))[-4:] == [
        "loop:ab_form", "slot:requested_slot=a", "bot:A?", LISTEN,
    ]  # fmt: skip
    # the validation action raised ActionExecutionRejection: the form is rejected
    assert await bot.say("skip") == [
        "user:skip", "action_execution_rejected:ab_form", "action:utter_sorry", "bot:Sorry", LISTEN,
    ]  # fmt: skip


async def test_a_failed_validation_action_fails_the_turn(
    small: tuple[DialogueService, MemoryHotStore],
) -> None:
    def validate(request: ActionRequest) -> tuple[str, list[Event], list[dict[str, Any]]]:
        return "failed", [], []

    bot = Bot(*small, scripted({"validate_ab_form": validate}))
    assert (await bot.say("start"))[3:] == [
        "user:start", "bot:Oops", "action_failed:validate_ab_form", LISTEN,
    ]  # fmt: skip


def test_a_pending_form_action_round_trips_through_json() -> None:
    run = FormRun(
        "ab_form", "ask", False, "a", True, {"a": 1}, (ActiveLoop(name="ab_form"), slot("a", 1))
    )
    pending = PendingAction(
        "r1",
        "action_ask_b",
        Prediction("ab_form", 0.9, "RulePolicy"),
        5.0,
        "rest",
        run.to_json(),
        (slot("requested_slot", "a"), ActionExecuted(name="ab_form")),
    )
    data = json.loads(json.dumps(pending.to_json()))
    back = PendingAction.from_json(data)
    assert back == pending
    assert back.prediction.action == "ab_form"
    assert back.loop is not None
    assert FormRun.from_json(back.loop) == run
    with pytest.raises(ValueError, match="stage"):
        FormRun.from_json({**run.to_json(), "stage": "dance"})
