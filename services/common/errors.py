"""Parley's errors: each says whether retrying can help."""

from __future__ import annotations


class ParleyError(Exception):
    """Base of Parley's errors. `retryable` tells the runtime whether to try again."""

    retryable: bool = False


class RetryableError(ParleyError):
    """A transient failure (a dependency down or slow): retry, after `delay` seconds if given."""

    retryable = True

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(ParleyError):
    """A failure that retrying cannot fix: the message goes to the dead-letter topic."""


class DecodeError(PermanentError):
    """The bytes on the wire are not a valid message for the topic."""


class DependencyUnavailable(RetryableError):
    """A dependency every message needs (Triton, say) is down after bounded retries.

    The runtime neither dead-letters nor skips the message: it keeps retrying it (with capped
    backoff) so nothing is lost or reordered, and the service reports itself not ready.
    """
