"""The user's action package: imported like rasa-sdk's `register_package`, but never fatal.

- Every module of the package is imported (recursively, as `ActionExecutor.register_package`
  does). Any failure (`ImportError`, `SyntaxError`, an exception or `sys.exit` at import time)
  becomes a `PackageLoadError` naming the file and line inside the package and a hint, where
  rasa-sdk would log and `sys.exit(1)`.
- The actions registered are the non-abstract `rasa_sdk.Action` subclasses defined in, or
  imported into, the package's modules. rasa-sdk scans every subclass loaded in the process;
  looking at the package's own namespace keeps two packages in one process apart (tests) and
  drops stale classes after a reload. Same name twice: the last one wins, as in rasa-sdk.
- `reload()` re-imports the whole package afresh when a `.py` file changed (polled by `watch`);
  a broken edit is logged and the previous actions are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import inspect
import logging
import pkgutil
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from rasa_sdk import Action

from services.common.errors import ParleyError

logger = logging.getLogger(__name__)

ActionFunction = Callable[..., Any]
Snapshot = dict[Path, tuple[int, int]]
SDK_MODULES = ("rasa_sdk.", "rasa.", "rasa_core.", "rasa_core_sdk.")


class PackageLoadError(ParleyError):
    """The action package cannot be imported or registered; fix the code and restart."""

    def __init__(
        self,
        package: str,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        hint: str = "",
    ) -> None:
        where = f"{file}:{line}: " if file and line else f"{file}: " if file else ""
        message = f"cannot load action package '{package}': {where}{reason}"
        super().__init__(f"{message}. Hint: {hint}" if hint else message)
        self.package = package
        self.reason = reason
        self.file = file
        self.line = line
        self.hint = hint


@dataclass(frozen=True)
class RegisteredAction:
    """One action: its name, the function rasa-sdk would call, and where it was defined."""

    name: str
    run: ActionFunction
    is_async: bool
    source: str


@dataclass(frozen=True)
class LoadedPackage:
    modules: tuple[ModuleType, ...]
    actions: dict[str, RegisteredAction]
    files: Snapshot


def resolve_package(spec: str) -> tuple[str, Path | None]:
    """`(module name, folder to import it from)`: a dotted name, or a path to a package
    folder or a `.py` file (imported by its own name from the folder holding it)."""
    path = Path(spec)
    if spec.endswith(".py") or "/" in spec or "\\" in spec or (path.is_dir() and "." not in spec):
        path = path.resolve()
        return (path.stem if path.suffix == ".py" else path.name), path.parent
    return spec, None


class ActionRegistry:
    """Loads the action package and answers which actions it has."""

    def __init__(self, package: str) -> None:
        self.spec = package
        self.package, self._search_path = resolve_package(package)
        self._loaded: LoadedPackage | None = None

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def names(self) -> list[str]:
        """The registered action names, sorted."""
        return sorted(self._loaded.actions) if self._loaded else []

    def get(self, name: str) -> RegisteredAction | None:
        return self._loaded.actions.get(name) if self._loaded else None

    def load(self) -> None:
        """Import the package and register its actions; `PackageLoadError` says what is wrong."""
        if self._search_path is not None and str(self._search_path) not in sys.path:
            sys.path.insert(0, str(self._search_path))
        self._loaded = self._import_fresh()
        logger.info(
            "action package '%s': %d action(s): %s",
            self.package,
            len(self._loaded.actions),
            ", ".join(self.names()) or "none",
        )

    def changed(self) -> bool:
        """Whether a `.py` file of the package was added, removed or modified since loading."""
        return self._loaded is not None and self._scan(self._loaded.modules) != self._loaded.files

    def reload(self) -> bool:
        """Re-import the package if it changed; True when new actions are in place."""
        if self._loaded is None or not self.changed():
            return False
        for path in self._loaded.files:
            with contextlib.suppress(OSError, ValueError):
                Path(importlib.util.cache_from_source(str(path))).unlink(missing_ok=True)
        importlib.invalidate_caches()
        try:
            self._loaded = self._import_fresh()
        except PackageLoadError as exc:
            logger.error("action package not reloaded, keeping the previous actions: %s", exc)
            return False
        logger.info("action package '%s' reloaded: %s", self.package, ", ".join(self.names()))
        return True

    async def watch(self, interval_s: float, stop: asyncio.Event) -> None:
        """Poll the package's files every `interval_s` and reload on change, until `stop`."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
            if not stop.is_set():
                self.reload()

    def _import_fresh(self) -> LoadedPackage:
        saved = {n: m for n, m in sys.modules.items() if self._owns(n)}
        for name in saved:
            del sys.modules[name]
        try:
            modules = self._import_all()
            actions = self._register(modules)
        except PackageLoadError:
            for name in [n for n in sys.modules if self._owns(n)]:
                del sys.modules[name]
            sys.modules.update(saved)
            raise
        return LoadedPackage(tuple(modules), actions, self._scan(modules))

    def _owns(self, module_name: str) -> bool:
        return module_name == self.package or module_name.startswith(self.package + ".")

    def _import_all(self) -> list[ModuleType]:
        modules: list[ModuleType] = []

        def visit(name: str) -> None:
            module = self._import(name)
            modules.append(module)
            for info in pkgutil.iter_modules(getattr(module, "__path__", []), prefix=name + "."):
                visit(info.name)

        visit(self.package)
        return modules

    def _import(self, name: str) -> ModuleType:
        try:
            return importlib.import_module(name)
        except SyntaxError as exc:
            raise PackageLoadError(
                self.package,
                f"SyntaxError: {exc.msg}",
                file=exc.filename,
                line=exc.lineno,
                hint="fix the syntax error in the action code",
            ) from exc
        except (Exception, SystemExit) as exc:  # user code at import time
            file, line = self._blame(exc)
            raise PackageLoadError(
                self.package,
                f"{type(exc).__name__}: {exc}",
                file=file,
                line=line,
                hint=_hint(exc, name, file),
            ) from exc

    def _blame(self, exc: BaseException) -> tuple[str | None, int | None]:
        roots = self._roots()
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            path = Path(frame.filename)
            if any(path == root or root in path.parents for root in roots):
                return frame.filename, frame.lineno
        return None, None

    def _roots(self) -> list[Path]:
        if self._search_path is not None:
            return [self._search_path / self.package, self._search_path / f"{self.package}.py"]
        try:
            spec = importlib.util.find_spec(self.package)
        except (ImportError, ValueError):
            return []
        if spec is None:
            return []
        if spec.submodule_search_locations:
            return [Path(p) for p in spec.submodule_search_locations]
        return [Path(spec.origin)] if spec.origin else []

    def _register(self, modules: list[ModuleType]) -> dict[str, RegisteredAction]:
        actions: dict[str, RegisteredAction] = {}
        seen: set[type[Any]] = set()
        for module in modules:
            for cls in _action_classes(module):
                if cls in seen:
                    continue
                seen.add(cls)
                action = self._instantiate(cls)
                previous = actions.get(action.name)
                if previous is not None:
                    logger.warning(
                        "action '%s' defined twice (%s, %s): using the latter",
                        action.name,
                        previous.source,
                        action.source,
                    )
                actions[action.name] = action
        return actions

    def _instantiate(self, cls: type[Any]) -> RegisteredAction:
        source = f"{cls.__module__}.{cls.__qualname__}"
        try:
            instance = cls()
            name = instance.name()
        except Exception as exc:  # user code: constructor or name()
            file, line = self._blame(exc)
            if file is None:
                file, line = inspect.getsourcefile(cls), _first_line(cls)
            raise PackageLoadError(
                self.package,
                f"action class {source} cannot be registered: {type(exc).__name__}: {exc}",
                file=file,
                line=line,
                hint="an action needs a constructor without arguments and a name() returning "
                "a string; mark base classes abstract",
            ) from exc
        if not isinstance(name, str) or not name:
            raise PackageLoadError(
                self.package,
                f"action class {source}: name() returned {name!r}, not a non-empty string",
                file=inspect.getsourcefile(cls),
                line=_first_line(cls),
                hint="return the action's name as it appears in the domain",
            )
        run = instance.run
        return RegisteredAction(name, run, _is_async(run), source)

    def _scan(self, modules: tuple[ModuleType, ...] | list[ModuleType]) -> Snapshot:
        folders: set[Path] = set()
        files: Snapshot = {}
        for module in modules:
            folders.update(Path(p) for p in getattr(module, "__path__", []))
            if getattr(module, "__file__", None):
                folders.add(Path(str(module.__file__)).parent)
        for path in _python_files(folders, modules):
            with contextlib.suppress(OSError):
                stat = path.stat()
                files[path] = (stat.st_mtime_ns, stat.st_size)
        return files


def _python_files(
    folders: set[Path], modules: tuple[ModuleType, ...] | list[ModuleType]
) -> Iterator[Path]:
    packaged = any(getattr(m, "__path__", None) for m in modules)
    if not packaged:  # a single-module package: watch that file only
        for module in modules:
            if getattr(module, "__file__", None):
                yield Path(str(module.__file__))
        return
    roots = [f for f in folders if not any(f != o and o in f.parents for o in folders)]
    for root in roots:
        for path in root.rglob("*.py"):
            if "__pycache__" not in path.parts:
                yield path


def _action_classes(module: ModuleType) -> Iterator[type[Any]]:
    for value in list(vars(module).values()):
        if (
            inspect.isclass(value)
            and issubclass(value, Action)
            and value is not Action
            and not value.__module__.startswith(SDK_MODULES)
            and value.__module__ != "rasa_sdk"
            and not inspect.isabstract(value)
        ):
            yield value


def _is_async(function: ActionFunction) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - async callables, not callability
    )


def _first_line(cls: type[Any]) -> int | None:
    try:
        return inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return None


def _hint(exc: BaseException, module: str, file: str | None) -> str:
    if isinstance(exc, ModuleNotFoundError):
        if exc.name and (exc.name == module or module.startswith(exc.name + ".")):
            return (
                "check the --actions value: a package importable from the working directory "
                "(like rasa-sdk's --actions), or a path to the package folder"
            )
        return f"install '{exc.name}' in the actions worker's environment"
    if isinstance(exc, ImportError):
        return "a name imported by the action code does not exist in that module"
    if isinstance(exc, SystemExit):
        return "the action code calls sys.exit() while being imported"
    if file is None:
        return "the error happened outside the package, in code it imports"
    return "the action code raised while being imported; move start-up work out of module level"
