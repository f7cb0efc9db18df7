"""What ``publish_and_wait`` reports: each handler's outcome."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import msgspec

from tidings.errors import DeadLettered
from tidings.message import Message

if TYPE_CHECKING:
    from tidings.route import Route

__all__ = ["Outcome", "PublishResult"]


class Outcome(NamedTuple):
    """One handler's result: ``error`` is None on success, else the exception it raised."""

    handler: str
    error: BaseException | None

    @property
    def ok(self) -> bool:
        return self.error is None


class PublishResult(msgspec.Struct, eq=False):
    """The outcome of every handler that received a message (the error channel).

    Made by ``PublishResult(message, routes, errors)``, ``errors`` None when none failed. (A
    Struct: made in C, half the cost of a class with ``__init__`` on every publish.)
    """

    message: Message
    _routes: Sequence[Route]
    _errors: Mapping[Route, BaseException] | None

    @property
    def ok(self) -> bool:
        """Whether every handler succeeded."""
        return not self._errors

    @property
    def outcomes(self) -> list[Outcome]:
        errors = self._errors or {}
        return [Outcome(r.name, _unwrap(errors.get(r))) for r in self._routes]

    @property
    def errors(self) -> list[BaseException]:
        """The handlers' own exceptions (unwrapped from DeadLettered)."""
        return [e for o in self.outcomes if (e := o.error) is not None]

    def raise_errors(self) -> None:
        """Raise an ExceptionGroup of the handlers' exceptions, if any failed."""
        if self._errors:
            raise ExceptionGroup(
                f"{len(self._errors)} handler(s) failed on {self.message.type}",
                [e for e in self.errors if isinstance(e, Exception)],
            )

    def __len__(self) -> int:
        return len(self._routes)

    def __repr__(self) -> str:
        return f"PublishResult({self.message.type}, {self.outcomes!r})"


def _unwrap(error: BaseException | None) -> BaseException | None:
    return error.error if isinstance(error, DeadLettered) else error
