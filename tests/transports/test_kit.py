"""The kit every broker package is built from: error mapping, bulk settlement, supervision,
the fan-in of partitioned subscriptions."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from tidings.errors import ClosedError, ServiceUnavailable, TidingsError, TransportError
from tidings.transports.kit.errors import ErrorMap
from tidings.transports.kit.fan_in import FanIn
from tidings.transports.kit.settle import Settler
from tidings.transports.kit.supervise import supervise


class Lost(Exception):
    pass


class Refused(Exception):
    pass


def _refused(exc: BaseException, doing: str) -> TidingsError | None:
    return TransportError(f"login refused while {doing}") if isinstance(exc, Refused) else None


ERRORS = ErrorMap(
    "Broker", "127.0.0.1:1", unreachable=(Lost,), client=(ValueError, Refused), special=_refused
)


@pytest.mark.parametrize(
    ("raised", "kind", "text"),
    [
        (Lost("reset"), ServiceUnavailable, "Broker is not reachable at 127.0.0.1:1 (publishing)"),
        (ValueError("bad"), TransportError, "Broker failed publishing at 127.0.0.1:1: bad"),
        (Refused(), TransportError, "login refused while publishing"),
    ],
)
def test_client_errors_become_tidings_errors_chained_to_the_cause(
    raised: Exception, kind: type[Exception], text: str
) -> None:
    with pytest.raises(kind, match=re.escape(text)) as caught, ERRORS.mapping("publishing"):
        raise raised
    assert caught.value.__cause__ is raised


def test_tidings_errors_and_foreign_bugs_pass_unchanged() -> None:
    closed = ClosedError("closed")
    with pytest.raises(ClosedError) as caught, ERRORS.mapping("publishing"):
        raise closed
    assert caught.value is closed
    with pytest.raises(KeyError), ERRORS.mapping("publishing"):
        raise KeyError("a bug is not a broker error")


async def test_settlements_recorded_in_one_turn_are_written_as_one_batch() -> None:
    batches: list[list[int]] = []

    async def send(batch: list[int]) -> None:
        batches.append(batch)

    settler = Settler(send, name="test")
    for tag in range(5):
        settler.record(tag)
    await settler.drain()
    assert batches == [[0, 1, 2, 3, 4]]


async def test_records_made_while_a_batch_is_written_go_in_the_next() -> None:
    batches: list[list[int]] = []
    writing, release = asyncio.Event(), asyncio.Event()

    async def send(batch: list[int]) -> None:
        batches.append(batch)
        writing.set()
        await release.wait()

    settler = Settler(send, name="test")
    settler.record(1)
    await writing.wait()
    settler.record(2)
    settler.record(3)
    release.set()
    await settler.drain()
    assert batches == [[1], [2, 3]]


async def test_a_transient_failure_keeps_the_batch_and_tries_again() -> None:
    batches: list[list[int]] = []

    async def send(batch: list[int]) -> None:
        batches.append(batch)
        if len(batches) == 1:
            raise Lost("connection reset")

    settler = Settler(send, name="test", transient=(Lost,))
    settler.record(7)
    await settler.drain()
    assert batches == [[7], [7]]


async def test_any_other_failure_gives_the_batch_up_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def send(batch: list[int]) -> None:
        raise ValueError("queue deleted")

    settler = Settler(send, name="orders/billing")
    settler.record(1)
    settler.record(2)
    await settler.drain()
    assert settler.pending == 0
    (record,) = caplog.records
    assert "orders/billing: could not settle 2 deliveries" in record.getMessage()


async def test_after_close_writes_are_tried_once_and_records_ignored() -> None:
    tries: list[list[int]] = []

    async def send(batch: list[int]) -> None:
        tries.append(batch)
        raise Lost("down")

    settler = Settler(send, name="test", transient=(Lost,))
    settler.record(1)
    await settler.close()
    settler.record(2)
    assert tries == [[1]]
    assert settler.pending == 0


async def test_a_supervised_task_restarts_after_failures_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[int] = []

    async def run() -> None:
        runs.append(len(runs))
        if len(runs) < 4:
            raise RuntimeError(f"injected {len(runs)}")

    await asyncio.wait_for(supervise("the keeper", run), 5)
    assert runs == [0, 1, 2, 3]
    (record,) = caplog.records
    assert record.getMessage().startswith("the keeper failed")
    assert record.exc_info is not None
    assert "injected 1" in str(record.exc_info[1])


async def test_cancelling_a_supervised_task_ends_it() -> None:
    started = asyncio.Event()

    async def run() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.get_running_loop().create_task(supervise("the keeper", run))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class _Failing:
    """A subscription whose iteration fails with ``error`` after one batch."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def __aiter__(self) -> AsyncIterator[list[int]]:
        yield [1]
        raise self.error


@pytest.mark.parametrize("error", [TransportError("gone"), RuntimeError("a bug")])
async def test_a_fan_in_passes_on_any_error_of_a_subscription(error: Exception) -> None:
    """Whatever a followed subscription raises reaches the iterating task (which restarts the
    consumer, visibly), instead of ending that subscription's reading silently."""
    fan_in: FanIn[int] = FanIn()
    fan_in.follow(_Failing(error))
    assert await fan_in.next() == [1]
    with pytest.raises(type(error)):
        async with asyncio.timeout(10):  # not a hang: before, the reader ended silently
            await fan_in.next()


class _FailingFirst:
    """A subscription whose first iteration fails at once with ``error``, later ones yield."""

    def __init__(self, error: Exception, batch: list[int]) -> None:
        self.error, self.batch, self.tries = error, batch, 0

    async def __aiter__(self) -> AsyncIterator[list[int]]:
        self.tries += 1
        if self.tries == 1:
            raise self.error
        yield self.batch
        await asyncio.Event().wait()


async def test_a_fan_in_raises_one_error_for_subscriptions_that_failed_together() -> None:
    """Sixteen partitions whose reading failed in one outage cost the consumer one restart, not
    sixteen (each with a longer backoff): the iterating task gets one error, and following them
    again reads them all anew."""
    fan_in: FanIn[int] = FanIn()
    parts = [_FailingFirst(ServiceUnavailable(f"part {n} lost"), [n]) for n in range(16)]
    for part in parts:
        fan_in.follow(part)
    with pytest.raises(ServiceUnavailable):
        await fan_in.next()
    for part in parts:  # what the consumer's restart does
        fan_in.follow(part)
    async with asyncio.timeout(10):
        batches = [await fan_in.next() for _ in parts]
    assert sorted(n for batch in batches for n in batch) == list(range(16))
    fan_in.cancel()
