"""Which logged events still shape a tracker: Rasa's ``applied_events()``, event for event.

Restarts and session starts cut the history, rewinds and undos remove what they revert, and
a loop that runs again on its happy path collapses onto its previous execution (Rasa's
unhappy-path bookkeeping in ``rasa/shared/core/trackers.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from schemas.events import (
    ActionExecuted,
    ActionExecutionRejected,
    ActionReverted,
    ActiveLoop,
    DefinePrevUserUtteredFeaturization,
    Event,
    Restarted,
    SessionStarted,
    UserUtteranceReverted,
    UserUttered,
)

__all__ = ["applied_events", "events_after_latest_restart"]


def applied_events(events: Sequence[Event]) -> list[Event]:
    """The events that still apply, in order, as Rasa's ``tracker.applied_events()``."""
    # Rasa collects loop names over the whole log, later activations included.
    loop_names = {e.name for e in events if isinstance(e, ActiveLoop) and e.name}
    applied: list[Event] = []
    for event in events:
        if isinstance(event, Restarted | SessionStarted):
            applied = []
        elif isinstance(event, ActionReverted):
            _undo_till_previous(ActionExecuted, applied)
        elif isinstance(event, UserUtteranceReverted):
            # A user message always follows an action_listen: drop both.
            _undo_till_previous(UserUttered, applied)
            _undo_till_previous(ActionExecuted, applied)
        elif (
            isinstance(event, ActionExecuted)
            and event.name is not None
            and event.name in loop_names
            and not _first_loop_execution_or_unhappy_path(event.name, applied)
        ):
            _undo_till_previous_loop_execution(event.name, applied)
        else:
            applied.append(event)
    return applied


def events_after_latest_restart(events: Sequence[Event]) -> list[Event]:
    """The events after the most recent ``restart`` (all of them if there is none)."""
    for index in range(len(events) - 1, -1, -1):
        if isinstance(events[index], Restarted):
            return list(events[index + 1 :])
    return list(events)


def _undo_till_previous(event_type: type[Event], done: list[Event]) -> None:
    """Pop events off ``done`` up to and including the latest ``event_type`` (or all)."""
    while done:
        if isinstance(done.pop(), event_type):
            return


def _first_loop_execution_or_unhappy_path(loop_name: str, done: Sequence[Event]) -> bool:
    next_action: str | None = None
    for event in reversed(done):
        # A deactivation means earlier loop events belong to another run of a loop.
        if isinstance(event, ActiveLoop) and event.name is None:
            return True
        if _is_within_unhappy_path(loop_name, event, next_action):
            return True
        if isinstance(event, ActionExecuted):
            if event.name == loop_name:
                return False
            next_action = event.name
    return True


def _is_within_unhappy_path(loop_name: str, event: Event, next_action: str | None) -> bool:
    # Live conversations reject the loop explicitly; training data only shows that
    # another action ran after the user spoke.
    rejected = isinstance(event, ActionExecutionRejected) and event.name == loop_name
    other_action_after_user = (
        isinstance(event, UserUttered) and next_action is not None and next_action != loop_name
    )
    return rejected or other_action_after_user


def _undo_till_previous_loop_execution(loop_name: str, done: list[Event]) -> None:
    """Drop the actions and user turns since the loop last ran; keep everything else."""
    start = len(done)
    kept: list[Event] = []
    while start > 0:
        event = done[start - 1]
        if isinstance(event, ActionExecuted) and event.name == loop_name:
            break
        if not isinstance(event, ActionExecuted | UserUttered | DefinePrevUserUtteredFeaturization):
            kept.append(event)
        start -= 1
    done[start:] = reversed(kept)
