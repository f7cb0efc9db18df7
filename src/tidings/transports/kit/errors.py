"""A broker client's exceptions become tidings' at the boundary, the same way for every broker.

Each broker package builds one :class:`ErrorMap` naming its client's exception classes, and wraps
every call into the client in ``with errors.mapping("publishing"):``. What comes out is always a
:class:`~tidings.errors.TidingsError`, chained to the client's exception:

* an error that says the broker cannot be reached → :class:`~tidings.errors.ServiceUnavailable`;
* any other error of the client → :class:`~tidings.errors.TransportError`;
* what the broker needs said its own way (a refused login, a missing JetStream) → the result of
  ``special``, consulted first;
* tidings' own errors pass unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tidings.errors import ServiceUnavailable, TidingsError, TransportError

__all__ = ["ErrorMap"]


@dataclass(frozen=True, slots=True)
class ErrorMap:
    """How one broker's client errors read as tidings errors.

    ``broker`` names the broker in messages (``"Kafka"``), ``where`` is its redacted address.
    ``unreachable`` are the exception classes that mean the broker is down or the connection is
    gone; ``client`` are the rest of the client's exception classes worth mapping (other
    exceptions, bugs included, are not touched). ``special(exc, doing)`` may return a more precise
    error, or None.
    """

    broker: str
    where: str
    unreachable: tuple[type[BaseException], ...]
    client: tuple[type[BaseException], ...] = ()
    special: Callable[[BaseException, str], TidingsError | None] | None = None

    def error(self, exc: BaseException, doing: str) -> TidingsError:
        """The tidings error for ``exc``, raised by the client while ``doing`` something."""
        if isinstance(exc, TidingsError):
            return exc
        if self.special is not None and (error := self.special(exc, doing)) is not None:
            return error
        if isinstance(exc, self.unreachable):
            return ServiceUnavailable(
                f"{self.broker} is not reachable at {self.where} ({doing}): {exc}"
            )
        return TransportError(f"{self.broker} failed {doing} at {self.where}: {exc}")

    def handles(self, exc: BaseException) -> bool:
        """Whether :meth:`mapping` turns ``exc`` into a tidings error."""
        return isinstance(exc, self.unreachable + self.client)

    @contextmanager
    def mapping(self, doing: str) -> Iterator[None]:
        """Raise the client's errors inside the block as tidings errors (``raise … from exc``)."""
        try:
            yield
        except TidingsError:
            raise
        except Exception as exc:
            if not self.handles(exc):
                raise
            raise self.error(exc, doing) from exc
