"""The one SQL foundation under the SQL transports and the SQL event stores.

Connections, pooling, transactions, busy handling and wake-ups on notification live here once, for
SQLite and for PostgreSQL; :mod:`tidings.transports.sqlite`, :mod:`tidings.transports.postgres` and
the event store backends build their tables and queries on top. Nothing here knows about messages
or events.
"""
