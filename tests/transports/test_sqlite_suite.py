"""The conformance suite on the SQLite transport."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from tidings.testing.receiver import TransportFactory
from tidings.testing.suite_foreign import ForeignPublish
from tidings.testing.transport_suite import TransportSuite
from tidings.transports.sqlite import SqliteTransport

_COLUMNS = {
    "tidings-id": "id",
    "tidings-type": "type",
    "tidings-key": "key",
    "tidings-time": "time",
}


def raw_headers(headers: dict[str, bytes]) -> bytes | None:
    """The headers column another program might write: a JSON object put together from the raw
    bytes, so a value that is not UTF-8 makes it unreadable."""
    pairs = [b'"%s":"%s"' % (k.encode(), v) for k, v in headers.items() if k not in _COLUMNS]
    return b"{" + b",".join(pairs) + b"}" if pairs else None


def insert_row(path: str, topic: str, data: bytes, headers: dict[str, bytes]) -> None:
    """One log row written with sqlite3; SQLite keeps garbage envelope values as they are."""
    columns = {"id": b"", "type": topic.encode(), "key": None, "time": time.time()}
    columns.update({_COLUMNS[k]: v for k, v in headers.items() if k in _COLUMNS})
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO tidings_log (topic, id, type, key, time, headers, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (topic, *columns.values(), raw_headers(headers), data),
        )
    conn.close()


class TestSqliteTransport(TransportSuite):
    @pytest.fixture
    def transport_factory(self, sqlite_url: str) -> TransportFactory:
        return lambda: SqliteTransport(sqlite_url)

    @pytest.fixture
    def scale_url(self, sqlite_url: str) -> str:
        return f"{sqlite_url}?lease=2"

    @pytest.fixture
    def foreign_publish(self, sqlite_url: str) -> ForeignPublish:
        path = sqlite_url.removeprefix("sqlite:///")

        async def publish(topic: str, data: bytes, headers: dict[str, bytes]) -> None:
            await asyncio.to_thread(insert_row, path, topic, data, headers)

        return publish
