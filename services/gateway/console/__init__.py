"""The human-agent handoff console: a queue of conversations handed to agents, live
transcripts, replies, notes, canned responses, hand-back and search (see docs/console.md)."""

from services.gateway.console.router import console_router

__all__ = ["console_router"]
