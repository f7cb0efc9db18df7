"""What ``tidings demo`` reports, in process or with ``--workers``: the summary, its parts, and
following the services until they finished."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable

import msgspec

__all__ = ["BATCH", "SERVICES", "Reason", "Summary", "follow", "reasons", "service_groups"]

SERVICES = ("email", "audit", "preferences")
BATCH = 100
"""Signups per publish: one transport round trip each."""


class Reason(msgspec.Struct, frozen=True):
    """Dead letters of one service that failed for the same reason."""

    service: str
    error_type: str
    error_message: str
    count: int


class Summary(msgspec.Struct, frozen=True):
    """What ``--json`` prints. ``handled_by_worker`` maps each worker's number to the signups
    it handled per service (redeliveries counted again); empty without ``--workers``."""

    url: str
    transport: str
    count: int
    complete: bool
    handled: dict[str, int]
    retried: int
    dead_lettered: int
    reasons: list[Reason]
    elapsed_seconds: float
    events_per_second: float
    directory: str
    workers: int = 1
    handled_by_worker: dict[str, dict[str, int]] = {}


def service_groups() -> dict[str, str]:
    """Each service's consumer group."""
    from tidings.examples import signup  # registers its event: only when the demo runs

    return {
        "email": signup.EMAIL_GROUP,
        "audit": signup.AUDIT_GROUP,
        "preferences": signup.PREFERENCES_GROUP,
    }


def reasons(failures: Iterable[tuple[str, str, str]]) -> list[Reason]:
    """Dead letters given as (group, error type, error message), grouped by service (named
    after their group) and error, most frequent first."""
    services = {group: name for name, group in service_groups().items()}
    counts = Counter((services.get(group, group), kind, text) for group, kind, text in failures)
    return [Reason(*reason, count=n) for reason, n in counts.most_common()]


async def follow(
    finished: Callable[[], dict[str, int]],
    changed: asyncio.Event,
    count: int,
    *,
    timeout: float,
    progress: Callable[[dict[str, int]], None],
) -> bool:
    """Call ``progress(finished())`` each time ``changed`` is set until every service finished
    ``count`` signups (True) or ``timeout`` seconds passed (False)."""
    try:
        async with asyncio.timeout(timeout):
            while min((now := finished()).values()) < count:
                progress(now)
                changed.clear()
                await changed.wait()
    except TimeoutError:
        return False
    finally:
        progress(finished())
    return True
