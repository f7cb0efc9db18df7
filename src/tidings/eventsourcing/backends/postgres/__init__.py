"""The PostgreSQL event store (``postgresql://``, ``postgres://``); see :mod:`.store`.

==============  ====================================================================
:mod:`.store`   :class:`PostgresEventStore`: lifecycle, appends, reads, wake-ups
:mod:`.batch`   concurrent appends of one process sharing one round trip and commit
:mod:`.sql`     the tables, functions and statements
==============  ====================================================================
"""

from tidings.eventsourcing.backends.postgres.store import PostgresEventStore, PostgresTransaction

__all__ = ["PostgresEventStore", "PostgresTransaction"]
