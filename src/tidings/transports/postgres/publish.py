"""Publishing to PostgreSQL: one call of the schema's ``publish()`` function per batch."""

from __future__ import annotations

from collections.abc import Sequence

from tidings.message import Message
from tidings.sql.postgres import Postgres
from tidings.topics import validate_topic
from tidings.transports.postgres.wire import Schema, encode_headers

__all__ = ["Publisher"]


class Publisher:
    """Stores batches of messages in ``schema`` of ``db`` and notifies the subscribers."""

    __slots__ = ("_channel", "_db", "_sql")

    def __init__(self, db: Postgres, schema: Schema) -> None:
        self._db = db
        self._channel = schema.channel
        self._sql = schema.sql("SELECT {s}.publish($1, $2, $3, $4, $5, $6, $7, $8)")

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Store ``messages`` in one transaction, in order: the log rows, a pending row for every
        group whose topic or pattern matches, one NOTIFY.

        Raises ValueError for a wildcard topic, ServiceUnavailable when the server stayed
        unreachable for the database's retry time, and TransportError for other failures
        (nothing of the call is stored then). A publish tried again after a lost connection may
        store the messages twice (same ids).
        """
        validate_topic(topic)
        if not messages:
            return
        args = (
            topic,
            [m.id for m in messages],
            [m.type for m in messages],
            [m.key for m in messages],
            [encode_headers(m.headers) if m.headers else None for m in messages],
            [m.data for m in messages],
            [m.timestamp for m in messages],
            self._channel,
        )
        await self._db.run(
            lambda conn: conn.execute(self._sql, *args), doing=f"publishing to {topic!r}"
        )
