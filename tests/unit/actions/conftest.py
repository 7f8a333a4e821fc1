"""Loading action packages without leaking them into other tests' imports."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from services.actions.executor import ActionRunner
from services.actions.registry import ActionRegistry
from tests.unit.actions._calls import FIXTURE_PACKAGE

LoadPackage = Callable[[str], ActionRegistry]


@pytest.fixture
def load_package() -> Iterator[LoadPackage]:
    """Build (not load) a registry; its modules and sys.path entry are removed afterwards."""
    saved_path = list(sys.path)
    registries: list[ActionRegistry] = []

    def build(spec: str) -> ActionRegistry:
        registry = ActionRegistry(spec)
        registries.append(registry)
        return registry

    yield build
    sys.path[:] = saved_path
    for registry in registries:
        owned = [n for n in sys.modules if n.split(".")[0] == registry.package]
        for name in owned:
            del sys.modules[name]


@pytest.fixture
def registry(load_package: LoadPackage) -> ActionRegistry:
    loaded = load_package(str(FIXTURE_PACKAGE))
    loaded.load()
    return loaded


@pytest.fixture
async def runner(registry: ActionRegistry) -> AsyncIterator[ActionRunner]:
    built = ActionRunner(registry, timeout_s=5.0, concurrency=8)
    yield built
    built.close()
