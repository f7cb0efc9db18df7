"""The embedded event store on one SQLite file (``sqlite:///path/events.db``).

================  ==================================================================
:mod:`.store`     :class:`SqliteEventStore`: lifecycle, writes, reads, transactions
:mod:`.appends`   the job of one append, and the stream ids learnt on the way
:mod:`.sql`       the tables and the statements shared with transactions
================  ==================================================================

The file itself (connections, group commit, busy locks) is :mod:`tidings.sql.sqlite`'s.
"""

from tidings.eventsourcing.backends.sqlite.store import SqliteEventStore, SqliteTransaction

__all__ = ["SqliteEventStore", "SqliteTransaction"]
