"""The handoff console end to end in a real browser (Debian's Chromium, driven by Playwright),
on `parley run --project examples/bikeshop` (one process: memory bus, SQLite, in-process NLU).

A user chats on the chat page and asks for a human; an agent logs in to the console, sees the
conversation in the queue, opens it, claims it, hears the user live, replies; the user sees
the reply; the agent leaves a note and hands back to the bot, which answers the user's next
message. Every step is screenshotted under results/console-e2e/.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.chromium import chromium

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIKESHOP = REPO / "examples" / "bikeshop"
SCREENSHOTS = REPO / "results" / "console-e2e"
PASSWORD = "console-e2e-password"
START_TIMEOUT_S = 120.0
STEP_TIMEOUT_MS = 20_000
GREETINGS = re.compile(r"Spoke & Chain|workshop assistant|Need a repair booked")
CONNECTING = "I'm connecting you with a mechanic"


def _banner_lines(
    process: subprocess.Popen[str],
) -> tuple[queue.Queue[str | None], threading.Thread]:
    """`parley run`'s stdout, line by line, read by a thread (which also keeps the pipe from
    filling up); None once it closes."""
    lines: queue.Queue[str | None] = queue.Queue()
    stdout = process.stdout
    assert stdout is not None

    def pump() -> None:
        with stdout:
            for line in stdout:
                lines.put(line)
        lines.put(None)

    thread = threading.Thread(target=pump, name="parley-stdout", daemon=True)
    thread.start()
    return lines, thread


def _wait_for_url(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> str:
    """The chat page's URL, from the banner `parley run` prints once everything is up."""
    deadline = time.monotonic() + START_TIMEOUT_S
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        found = re.search(r"chat:\s+(http://\S+?)/\s*$", line)
        if found:
            return found.group(1)
    process.kill()
    process.wait()
    pytest.fail("`parley run` did not start:\n" + "".join(seen[-40:]), pytrace=False)


@pytest.fixture(scope="module")
def parley_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`parley run`'s data folder (its SQLite archive)."""
    return tmp_path_factory.mktemp("parley-data")


@pytest.fixture(scope="module")
def parley(bikeshop_model: Path, parley_data: Path) -> Iterator[str]:
    data = parley_data
    log = (data / "parley.log").open("w", encoding="utf-8")
    command = [
        str(Path(sys.executable).parent / "parley"),
        "run",
        "--project", str(BIKESHOP),
        "--port", "0",
        "--data", str(data),
        "--agent-password", PASSWORD,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PARLEY_GATEWAY_AGENTS_FILE", None)
    # Logs go to a file; stdout carries the banner with the URL.
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True
    )
    lines, pump = _banner_lines(process)
    try:
        yield _wait_for_url(process, lines)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        pump.join(timeout=10)
        log.close()
    assert process.returncode == 0, (data / "parley.log").read_text(encoding="utf-8")[-4000:]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def say(page: Page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send", exact=True).click()


def test_a_human_agent_takes_over_and_hands_back(parley: str, browser: Browser) -> None:
    expect.set_options(timeout=STEP_TIMEOUT_MS)
    user = browser.new_context(viewport={"width": 900, "height": 700}).new_page()
    agent = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()

    # 1. The user greets the bot, then asks for a person.
    user.goto(parley + "/")
    expect(user.locator("#status")).to_have_text("connected")
    sender = str(user.evaluate("localStorage.getItem('parley-sender')"))
    log = user.locator("#log")
    say(user, "hello")
    expect(log.locator("li.bot").first).to_contain_text(GREETINGS)
    shot(user, "01-user-greeted")
    say(user, "I want to talk to a person")
    expect(log.locator("li.bot").last).to_contain_text(CONNECTING)
    shot(user, "02-user-asks-for-a-human")

    # 2. The agent logs in: the conversation waits in the queue, with why and for how long.
    agent.goto(parley + "/console")
    agent.get_by_label("Username").fill("agent")
    agent.get_by_label("Password").fill(PASSWORD)
    agent.get_by_label("Password").press("Enter")
    expect(agent.locator("#connection")).to_have_text("live")
    item = agent.locator("#queue button", has_text=sender)
    expect(item).to_contain_text("customer_request")
    expect(item).to_contain_text(re.compile(r"waiting \d+s · unclaimed"))
    expect(agent.locator("#queue-count")).to_have_text(re.compile(r"[1-9]\d*"))
    expect(agent).to_have_title(re.compile(r"^\([1-9]\d*\) Parley — agent console$"))
    shot(agent, "03-console-queue")

    # 3. Opening it shows the transcript with the NLU's intent and confidence.
    item.click()
    transcript = agent.locator("#transcript")
    expect(transcript).to_have_attribute("aria-live", "polite")
    asked = transcript.locator("li.user", has_text="I want to talk to a person")
    expect(asked).to_contain_text(re.compile(r"intent human_handoff \d+%"))
    expect(transcript.locator("li.system", has_text="handed to an agent")).to_have_count(1)
    expect(agent.locator("#conv-status")).to_contain_text("waiting for an agent")
    shot(agent, "04-console-transcript")

    # 4. The agent claims it; what the user says now reaches the console live.
    agent.get_by_role("button", name="Claim", exact=True).click()
    expect(agent.locator("#conv-status")).to_contain_text("you hold it")
    expect(transcript).to_contain_text("Demo agent claimed the conversation")
    expect(item).to_contain_text("claimed by Demo agent")
    expect(agent).to_have_title("Parley — agent console")
    say(user, "my chain snapped on the way to work")
    expect(transcript.locator("li.user").last).to_contain_text("my chain snapped")
    shot(agent, "05-console-claimed")

    # 5. The agent answers (a canned response, edited; Enter sends) and the user sees it.
    agent.get_by_label("Canned response").select_option(index=1)
    reply = agent.get_by_label(re.compile("^Message"))
    expect(reply).not_to_have_value("")
    reply.fill("Hi, I'm Sam from the workshop. Bring it in today, we'll fix the chain.")
    reply.press("Enter")
    sent = transcript.locator("li.agent").last
    expect(sent).to_contain_text("Sam from the workshop")
    expect(sent).to_contain_text("✓ delivered")
    shot(agent, "06-console-agent-replied")
    expect(log.locator("li.agent").last).to_contain_text("Sam from the workshop")
    shot(user, "07-user-sees-the-agent")

    # 6. An internal note stays in the console; then the agent hands back to the bot.
    reply.fill("Chain replacement, customer is coming today")
    agent.get_by_role("button", name="Add internal note", exact=True).click()
    expect(transcript.locator("li.note")).to_contain_text("Chain replacement")
    agent.get_by_role("button", name="Hand back to bot", exact=True).click()
    expect(transcript).to_contain_text("the bot took over again")
    expect(agent.locator("#conv-status")).to_have_text("The bot is handling this conversation.")
    expect(agent.locator("#queue button", has_text=sender)).to_have_count(0)
    shot(agent, "08-console-handed-back")
    expect(log).not_to_contain_text("Chain replacement")

    # 7. The bot answers the user's next message again.
    bot_messages = log.locator("li.bot").count()
    say(user, "hello")
    expect(log.locator("li.bot")).to_have_count(bot_messages + 1)
    expect(log.locator("li.bot").last).to_contain_text(GREETINGS)
    shot(user, "09-user-bot-answers-again")
    expect(transcript.locator("li.bot").last).to_contain_text(GREETINGS)
    shot(agent, "10-console-bot-answers-again")

    # 8. The archive's search finds the conversation by what the user said.
    agent.get_by_label("Text in user or bot messages").fill("chain snapped")
    agent.get_by_label("Text in user or bot messages").press("Enter")
    found = agent.locator("#search-results button", has_text=sender)
    expect(found).to_contain_text("User: my chain snapped on the way to work")
    shot(agent, "11-console-search")


def test_the_user_rates_a_bot_message_on_the_chat_page_and_over_rest(
    parley: str, parley_data: Path, browser: Browser
) -> None:
    """Feedback (`user_feedback`): a thumbs down under a bot message on the chat page, and a
    rating over REST, reach the SQL archive and the agent's transcript."""
    import httpx

    expect.set_options(timeout=STEP_TIMEOUT_MS)
    user = browser.new_context(viewport={"width": 900, "height": 700}).new_page()
    user.goto(parley + "/")
    expect(user.locator("#status")).to_have_text("connected")
    sender = str(user.evaluate("localStorage.getItem('parley-sender')"))
    log = user.locator("#log")
    say(user, "hello")
    greeting = log.locator("li.bot").first
    expect(greeting).to_contain_text(GREETINGS)
    greeting.get_by_role("button", name="Not helpful").click()
    expect(greeting.get_by_role("status")).to_have_text("thanks for the feedback")
    expect(greeting.get_by_role("button", name="Helpful", exact=True)).to_be_disabled()
    shot(user, "12-user-thumbs-down")

    rest = httpx.post(
        parley + "/webhooks/rest/feedback",
        json={"sender": sender, "rating": 4, "scale": "stars", "comment": "quick answer"},
        timeout=30,
    )
    assert rest.status_code == 200, rest.text
    assert rest.json()["status"] == "recorded"

    # in the archive (the tracker is read from it), in order
    tracker = httpx.get(
        parley + f"/conversations/{sender}/tracker", params={"include_events": "ALL"}, timeout=30
    ).json()
    feedback = [e for e in tracker["events"] if e["event"] == "user_feedback"]
    assert [(f["rating"], f["scale"], f["input_channel"]) for f in feedback] == [
        (-1, "thumbs", "websocket"),
        (4, "stars", "rest"),
    ]
    assert GREETINGS.search(feedback[0]["message_text"])

    # and in the console's transcript of the conversation
    agent = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    agent.goto(parley + "/console")
    agent.get_by_label("Username").fill("agent")
    agent.get_by_label("Password").fill(PASSWORD)
    agent.get_by_label("Password").press("Enter")
    expect(agent.locator("#connection")).to_have_text("live")
    agent.get_by_label("Text in user or bot messages").fill("hello")
    agent.get_by_label("Text in user or bot messages").press("Enter")
    agent.locator("#search-results button", has_text=sender).first.click()
    transcript = agent.locator("#transcript")
    expect(transcript.locator("li.feedback").first).to_contain_text("not helpful")
    expect(transcript.locator("li.feedback").last).to_contain_text("4/5 stars")
    expect(transcript.locator("li.feedback").last).to_contain_text("quick answer")
    shot(agent, "13-console-feedback")

    # and in `parley stats` over the same archive
    stats = subprocess.run(
        [
            str(Path(sys.executable).parent / "parley"),
            "stats",
            "--database-url",
            f"sqlite+aiosqlite:///{parley_data / 'archive.db'}",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    import json

    rated = json.loads(stats.stdout)["feedback"]
    assert rated["thumbs"] == {"count": 1, "average": -1.0}
    assert rated["stars"] == {"count": 1, "average": 4.0}
