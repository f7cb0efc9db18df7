"""The PostgreSQL transport (``postgresql://``, ``postgres://``); see :mod:`.transport`.

==========================  ================================================================
:mod:`.transport`           :class:`PostgresTransport`: lifecycle, connections, wiring
:mod:`.options`             :class:`PostgresOptions`, from the URL
:mod:`.publish`             a batch of messages stored and notified in one call
:mod:`.subscription`        one group's pending rows as a queue for the kit's leased subscriptions
:mod:`.groups`              listing and dropping consumer groups
:mod:`.dead_letters`        dead letters in a table of the schema
:mod:`.wire`                the schema's tables and functions, their names, header bytes
==========================  ================================================================
"""

from tidings.transports.postgres.dead_letters import PostgresDeadLetterStore
from tidings.transports.postgres.options import PostgresOptions
from tidings.transports.postgres.transport import FEATURES, PostgresTransport, from_url

__all__ = [
    "FEATURES",
    "PostgresDeadLetterStore",
    "PostgresOptions",
    "PostgresTransport",
    "from_url",
]
