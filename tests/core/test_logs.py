"""``tidings.logs``: records written while a message is handled carry that message's ids."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

import tidings
import tidings.logs
from tidings import Bus, Message, Retry
from tidings.logs import FIELDS, ContextFilter, JsonFormatter, TextFormatter
from tidings.middleware import Handler, Middleware
from tidings.testing.telemetry import Captured


@tidings.event("logs.signed_up")
@dataclass(frozen=True)
class SignedUp:
    user: str


@tidings.event("logs.welcomed")
@dataclass(frozen=True)
class Welcomed:
    user: str


FAST = Retry(max_attempts=3, initial_delay=0.0, jitter=False)

log = logging.getLogger("tests.logs")


class Records(logging.Handler):
    """Keeps the records it is given, after the filter added the fields."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(ContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def fields(self, message: str | None = None) -> list[dict[str, Any]]:
        """Each record's fields (those with ``message``, if given), in the order written."""
        return [
            {name: getattr(record, name) for name in FIELDS}
            for record in self.records
            if message is None or record.getMessage() == message
        ]


@pytest.fixture
def written() -> Iterator[Records]:
    records = Records()
    log.addHandler(records)
    log.setLevel(logging.DEBUG)
    yield records
    log.removeHandler(records)
    log.setLevel(logging.NOTSET)


@pytest.fixture
def root_restored() -> Iterator[None]:
    """The root logger's handlers and level as they were (``configure`` replaces them)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def handled(message: Message, **where: Any) -> dict[str, Any]:
    """The fields of a record written while ``message`` was handled (no tracing)."""
    return {
        "message_id": message.id,
        "correlation_id": message.id,
        "causation_id": None,
        "trace_id": None,
        "span_id": None,
        "topic": message.type,
        "worker_id": None,
        **where,
    }


def test_records_name_the_worker_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_WORKER_ID", "3")
    records = Records()
    log.addHandler(records)
    try:
        log.warning("starting up")
    finally:
        log.removeHandler(records)
    assert records.fields() == [{**dict.fromkeys(FIELDS), "worker_id": 3}]


async def test_records_outside_handling_carry_none(written: Records) -> None:
    log.info("starting up")

    assert written.fields() == [dict.fromkeys(FIELDS)]


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_a_worker_s_handler_logs_with_its_message(written: Records, sync: bool) -> None:
    bus = Bus()
    done = asyncio.Event()

    def welcome_now(event: SignedUp) -> None:
        log.info("welcoming %s", event.user)
        done.set()

    async def welcome(event: SignedUp) -> None:
        welcome_now(event)

    bus.subscribe(SignedUp, welcome_now if sync else welcome, group="mail", name="welcome")
    async with bus:
        message = await bus.publish(SignedUp("ada"))
        await done.wait()
        log.info("done")

    where = {"route": "welcome", "group": "mail", "attempt": 1}
    assert written.fields() == [handled(message, **where), dict.fromkeys(FIELDS)]


async def test_a_message_published_while_handling_logs_its_cause(written: Records) -> None:
    bus = Bus()
    done = asyncio.Event()

    async def welcome(event: SignedUp) -> None:
        await bus.publish(Welcomed(event.user))

    def mailed(message: Message) -> None:
        log.info("mailed")
        done.set()

    bus.subscribe(SignedUp, welcome)
    bus.subscribe(Welcomed, mailed, group="audit", name="mailed")
    async with bus:
        first = await bus.publish(SignedUp("bo"))
        await done.wait()

    (fields,) = written.fields("mailed")
    assert fields["message_id"] != first.id
    assert (fields["correlation_id"], fields["causation_id"]) == (first.id, first.id)
    assert fields["topic"] == "logs.welcomed"
    assert (fields["route"], fields["group"]) == ("mailed", "audit")


def logging_middleware(handler: Handler) -> Handler:
    async def logged(message: Message) -> None:
        log.info("before")
        await handler(message)

    return logged


async def test_each_retry_on_sqlite_logs_its_attempt(written: Records, tmp_path: Path) -> None:
    bus = Bus(f"sqlite:///{tmp_path}/bus.db")
    done = asyncio.Event()

    async def flaky(event: SignedUp) -> None:
        here = tidings.current()
        assert here is not None
        log.warning("trying")
        if here.attempt < 3:
            raise ConnectionError("mail server busy")
        done.set()

    middleware: list[Middleware] = [logging_middleware]
    bus.subscribe(SignedUp, flaky, group="mail", retry=FAST, middleware=middleware)
    async with bus:
        message = await bus.publish(SignedUp("cy"))
        await done.wait()

    route = f"{__name__}.{flaky.__qualname__}"
    for text in ("before", "trying"):
        assert written.fields(text) == [
            handled(message, route=route, group="mail", attempt=attempt) for attempt in (1, 2, 3)
        ]


async def test_publish_and_wait_logs_from_every_handler_and_retry(written: Records) -> None:
    bus = Bus()
    tries = 0

    def audit(event: SignedUp) -> None:
        log.info("audit")

    async def mail(event: SignedUp) -> None:
        nonlocal tries
        tries += 1
        await asyncio.sleep(0)
        log.info("mail")
        if tries < 2:
            raise ConnectionError("busy")

    bus.subscribe(SignedUp, audit, group="audit", name="audit")
    bus.subscribe(SignedUp, mail, group="mail", name="mail", retry=FAST)
    message = bus.message(SignedUp("di"))
    result = await bus.publish_and_wait(message)

    assert result.ok
    assert written.fields("audit") == [handled(message, route="audit", group="audit", attempt=1)]
    assert written.fields("mail") == [
        handled(message, route="mail", group="mail", attempt=attempt) for attempt in (1, 2)
    ]


async def test_a_task_a_handler_started_logs_with_its_message(written: Records) -> None:
    bus = Bus()
    later: list[asyncio.Task[None]] = []

    async def follow_up() -> None:
        log.info("later")

    async def welcome(event: SignedUp) -> None:
        later.append(asyncio.create_task(follow_up()))

    bus.subscribe(SignedUp, welcome)
    async with bus:
        message = await bus.publish(SignedUp("ed"))
        await bus.drain()
        await asyncio.gather(*later)

    (fields,) = written.fields("later")
    assert fields["message_id"] == message.id


@pytest.mark.parametrize("queued", [True, False], ids=["publish", "publish_and_wait"])
async def test_trace_and_span_ids_are_those_of_the_process_span(
    written: Records, queued: bool
) -> None:
    captured = Captured()
    bus = Bus(telemetry=captured.telemetry)
    done = asyncio.Event()

    async def welcome(event: SignedUp) -> None:
        log.info("welcoming")
        done.set()

    bus.subscribe(SignedUp, welcome)
    async with bus:
        if queued:
            await bus.publish(SignedUp("fa"))
        else:
            await bus.publish_and_wait(SignedUp("fa"))
        await done.wait()

    (process,) = captured.spans("process ")
    (fields,) = written.fields("welcoming")
    assert fields["trace_id"] == f"{process.context.trace_id:032x}"
    assert fields["span_id"] == f"{process.context.span_id:016x}"


async def test_an_attribute_given_as_extra_is_kept(written: Records) -> None:
    bus = Bus()
    bus.subscribe(SignedUp, lambda event: log.info("mine", extra={"topic": "my own"}))
    await bus.publish_and_wait(SignedUp("gu"))
    log.info("mine too", extra={"route": "my route"})

    assert [f["topic"] for f in written.fields("mine")] == ["my own"]
    assert [f["route"] for f in written.fields("mine too")] == ["my route"]


async def test_json_lines_parse_and_carry_the_fields(written: Records) -> None:
    out = io.StringIO()
    lines = logging.StreamHandler(out)
    lines.setFormatter(JsonFormatter())
    lines.addFilter(ContextFilter())
    log.addHandler(lines)
    bus = Bus()

    def fail(event: SignedUp) -> None:
        try:
            raise ValueError("no '@' in\nthe address")
        except ValueError:
            log.exception("cannot mail %s", event.user, extra={"mailbox": Path("/var/mail")})

    bus.subscribe(SignedUp, fail, group="mail", name="fail")
    try:
        message = bus.message(SignedUp("hu"))
        await bus.publish_and_wait(message)
        log.warning("outside")
    finally:
        log.removeHandler(lines)

    first, second = (msgspec.json.decode(line) for line in out.getvalue().splitlines())
    assert first.pop("time").endswith("+00:00")
    exception = first.pop("exception")
    assert exception.startswith("Traceback")
    assert exception.endswith("ValueError: no '@' in\nthe address")
    assert first == {
        "level": "ERROR",
        "logger": "tests.logs",
        "message": "cannot mail hu",
        "message_id": message.id,
        "correlation_id": message.id,
        "topic": "logs.signed_up",
        "route": "fail",
        "group": "mail",
        "attempt": 1,
        "mailbox": "/var/mail",
    }
    del second["time"]
    assert second == {"level": "WARNING", "logger": "tests.logs", "message": "outside"}


async def test_text_lines_name_the_message_being_handled() -> None:
    formatter = TextFormatter("%(levelname)s %(message)s")
    record = log.makeRecord(log.name, logging.INFO, __file__, 1, "mailing", (), None)
    outside = log.makeRecord(log.name, logging.INFO, __file__, 1, "idle", (), None)
    bus = Bus()

    def mail(event: SignedUp) -> None:
        ContextFilter().filter(record)

    bus.subscribe(SignedUp, mail, name="mail")
    message = bus.message(SignedUp("ik"))
    await bus.publish_and_wait(message)
    ContextFilter().filter(outside)

    assert formatter.format(record) == (
        f"INFO mailing [logs.signed_up mail attempt 1 message {message.id}]"
    )
    assert formatter.format(outside) == "INFO idle"


@pytest.mark.usefixtures("root_restored")
async def test_configure_writes_json_lines_at_the_level_given() -> None:
    out = io.StringIO()
    tidings.logs.configure("json", "info", handler=logging.StreamHandler(out))
    bus = Bus()
    bus.subscribe(SignedUp, lambda event: logging.getLogger("app").info("hello"), name="hi")
    message = bus.message(SignedUp("jo"))

    await bus.publish_and_wait(message)
    logging.getLogger("app").debug("not shown")

    (line,) = out.getvalue().splitlines()
    written = msgspec.json.decode(line)
    assert (written["message"], written["message_id"], written["route"]) == (
        "hello",
        message.id,
        "hi",
    )


@pytest.mark.usefixtures("root_restored")
def test_configure_again_replaces_the_format() -> None:
    first, second = io.StringIO(), io.StringIO()
    tidings.logs.configure("json", handler=logging.StreamHandler(first))
    tidings.logs.configure("text", "warning", handler=logging.StreamHandler(second))

    logging.getLogger("app").warning("once")

    assert first.getvalue() == ""
    assert second.getvalue().rstrip().endswith("WARNING app: once")


@pytest.mark.usefixtures("root_restored")
@pytest.mark.parametrize(("form", "level"), [("xml", "info"), ("json", "loud")])
def test_configure_refuses_an_unknown_format_or_level(form: Any, level: str) -> None:
    before = list(logging.getLogger().handlers)

    with pytest.raises(ValueError, match="unknown log"):
        tidings.logs.configure(form, level)

    assert logging.getLogger().handlers == before
