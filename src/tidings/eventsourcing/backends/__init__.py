"""Event store backends: each implements :class:`~tidings.eventsourcing.store.EventStoreBackend`.

=============  ======================================================================
``memory``     in process, for tests and demos
``sqlite``     one file, the embedded default
``postgres``   a PostgreSQL schema, for many processes
``commits``    what the SQL backends share: commits as rows, their checks and decoding
=============  ======================================================================

A backend imports the store's protocol and value types and the SQL foundation
(:mod:`tidings.sql`), never a transport. :mod:`tidings.eventsourcing.open` picks one by URL.
"""
