"""Correlated logging: the conversation and message being handled ride on every log line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

conversation_id_var: ContextVar[str | None] = ContextVar("conversation_id", default=None)
message_id_var: ContextVar[str | None] = ContextVar("message_id", default=None)

_HANDLER_NAME = "parley"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(conversation_id)s %(message_id)s] %(message)s"


@contextmanager
def correlated(conversation_id: str | None, message_id: str | None) -> Iterator[None]:
    """Bind the conversation and message ids for the log lines written inside the block."""
    conversation_token = conversation_id_var.set(conversation_id)
    message_token = message_id_var.set(message_id)
    try:
        yield
    finally:
        message_id_var.reset(message_token)
        conversation_id_var.reset(conversation_token)


class CorrelationFilter(logging.Filter):
    """Adds `conversation_id` and `message_id` attributes to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.conversation_id = conversation_id_var.get() or "-"
        record.message_id = message_id_var.get() or "-"
        return True


def configure_logging(level: int | str = logging.INFO) -> None:
    """Configure the root logger; only entry points (the CLI) call this."""
    handler = logging.StreamHandler()
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
