"""Parley's version, and the Rasa version it speaks for (error bodies, `/version`)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def _parley_version() -> str:
    try:
        return version("parley")
    except PackageNotFoundError:
        return "unknown"


VERSION = _parley_version()
# The Rasa version whose HTTP API and action protocol Parley answers as.
RASA_COMPATIBLE_VERSION = "3.6.21"
