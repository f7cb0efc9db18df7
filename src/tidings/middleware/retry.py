"""Retry with exponential backoff and full jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass

from tidings import context
from tidings.clock import Clock, SystemClock
from tidings.errors import DecodeError, MessageTooLarge, UnknownEventType
from tidings.message import Message
from tidings.middleware import Handler, Middleware

__all__ = ["NO_RETRY", "Retry", "attempts_made", "retry"]

_HOPELESS: tuple[type[BaseException], ...] = (DecodeError, MessageTooLarge, UnknownEventType)
"""Errors no retry can cure: the input itself is bad."""


@dataclass(frozen=True, slots=True)
class Retry:
    """When to try a failed handler again, and how long to wait first.

    The n-th retry waits ``min(max_delay, initial_delay * multiplier ** (n - 1))`` seconds, or, with
    ``jitter``, a uniformly random part of that ("full jitter", so retrying consumers spread out).
    Exceptions in ``give_up_on`` (checked first) and those not in ``retry_on`` fail at once. Bad
    input (DecodeError, UnknownEventType) never improves on retry: it always gives up, whatever
    ``give_up_on`` lists.
    """

    max_attempts: int = 3
    initial_delay: float = 0.1
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    give_up_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValueError("delays must be >= 0 and multiplier >= 1")

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), before jitter."""
        try:
            return min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        except OverflowError:  # an attempt count from another producer can be any number
            return self.max_delay

    def next_delay(self, error: BaseException, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None to give up after ``attempt``."""
        if attempt >= self.max_attempts or not isinstance(error, Exception):
            return None
        if isinstance(error, _HOPELESS + self.give_up_on) or not isinstance(error, self.retry_on):
            return None
        delay = self.backoff(attempt)
        return random.uniform(0.0, delay) if self.jitter else delay


NO_RETRY = Retry(max_attempts=1)


def retry(policy: Retry, clock: Clock | None = None) -> Middleware:
    """Call the handler again in place, waiting between attempts, until it succeeds or
    ``policy`` gives up; then the last error propagates."""
    sleep = (clock or SystemClock()).sleep

    def wrap(handler: Handler) -> Handler:
        async def retrying(message: Message) -> None:
            attempt = 1
            while True:
                try:
                    return await handler(message)
                except Exception as error:
                    delay = policy.next_delay(error, attempt)
                    if delay is None:
                        error.tidings_attempts = attempt  # type: ignore[attr-defined]  # for DLQ
                        raise
                await sleep(delay)
                attempt += 1
                context.in_task.set(context.Attempt(message, attempt))  # tidings.current() says

        return retrying

    return wrap


def attempts_made(error: BaseException) -> int:
    """How many attempts the retry middleware made before ``error`` ended them (1 without it)."""
    attempts: int = getattr(error, "tidings_attempts", 1)
    return attempts
