"""SQLite transport: the embedded durable queue, ``sqlite:///events.db``.

==========================  ===============================================================
:mod:`.transport`           :class:`SqliteTransport`: lifecycle and wiring
:mod:`.options`             :class:`SqliteOptions` and the URL
:mod:`.publish`             appending messages to the log
:mod:`.subscription`        the leased queue of one group's cursor (kit.leased does the rest)
:mod:`.groups`              listing and dropping consumer groups
:mod:`.dead_letters`        :class:`SqliteDeadLetterStore`
:mod:`.wire`                the file's tables, their upgrade, and opening the file
==========================  ===============================================================

The file itself (connections, group commit, busy locks) is :mod:`tidings.sql.sqlite`'s.
"""

from tidings.transports.sqlite.dead_letters import SqliteDeadLetterStore
from tidings.transports.sqlite.options import SqliteOptions
from tidings.transports.sqlite.transport import FEATURES, SqliteTransport, from_url

__all__ = ["FEATURES", "SqliteDeadLetterStore", "SqliteOptions", "SqliteTransport", "from_url"]
