"""The in-process backends of `parley test stories` (a composition root, like `services/cli.py`):
the archive's NLU model through the NLU service's interpreter (onnxruntime), and custom actions
through the actions service's runner (rasa-sdk), both in this process.

The dialogue service's `test_stories_cli` imports no other service; it gets these through
`StoryBackends`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.envelopes import ActionRequest, ActionResult
from services.common.clock import SystemClock
from services.common.model_archive import read_members
from services.dialogue.test_stories_cli import ActionsHandle, NluHandle, StoryBackends

if TYPE_CHECKING:
    from services.actions.executor import ActionRunner
    from services.actions.worker import ActionsService
    from services.nlu.interpreter import NluInterpreter

__all__ = ["in_process_backends", "open_actions", "open_nlu"]


class _Nlu:
    def __init__(self, interpreter: NluInterpreter) -> None:
        self.interpreter = interpreter

    async def parse(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        from services.nlu.interpreter import ParseRequest

        return await self.interpreter.parse([ParseRequest(t) for t in texts])


def open_nlu(model: Path) -> NluHandle | None:
    """The archive's NLU model in process; None when the archive has no NLU part."""
    from services.nlu.archive import ModelArchive
    from services.nlu.interpreter import NluInterpreter
    from services.nlu.parse_data import ParseOptions

    if "nlu/model.onnx" not in read_members(model, ("nlu/model.onnx",)):
        return None
    nlu = ModelArchive.read(model).nlu
    return _Nlu(
        NluInterpreter.in_process(
            nlu, ParseOptions.from_rules(nlu.rules), known_intents=nlu.domain_intents
        )
    )


class _Actions:
    def __init__(self, runner: ActionRunner, service: ActionsService, package: str) -> None:
        self.runner = runner
        self.service = service
        self.package = package
        self.saved_path = list(sys.path)

    async def run(self, request: ActionRequest) -> ActionResult:
        (publication,) = await self.service.handle(request)
        result = publication.message
        assert isinstance(result, ActionResult)
        return result

    def close(self) -> None:
        """Stop the runner and unload the package (another one may have the same name)."""
        self.runner.close()
        sys.path[:] = self.saved_path
        for name in [n for n in sys.modules if n.split(".")[0] == self.package]:
            del sys.modules[name]


def open_actions(package: Path) -> ActionsHandle:
    """The action package loaded in process (`PackageLoadError` when it cannot be)."""
    from services.actions.executor import ActionRunner
    from services.actions.registry import ActionRegistry
    from services.actions.worker import ActionsService

    saved_path = list(sys.path)
    registry = ActionRegistry(str(package))
    try:
        registry.load()
    except BaseException:
        sys.path[:] = saved_path
        raise
    runner = ActionRunner(registry)
    handle = _Actions(runner, ActionsService(runner, SystemClock()), registry.package)
    handle.saved_path = saved_path
    return handle


def in_process_backends() -> StoryBackends:
    return StoryBackends(open_nlu=open_nlu, open_actions=open_actions)
