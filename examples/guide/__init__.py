"""The programs of a Go guide to event-driven architecture, ported one to one.

Each module is a program: ``python -m examples.guide.NAME`` prints what its Go original (sketched
in the module docstring) prints. ``docs/from-go.md`` walks through them pattern by pattern.

- ``bus``: an in-process bus, Subscribe, Publish and PublishSync.
- ``processor``: a buffered channel, a worker pool, ``Send(ctx)`` with a deadline, results and
  errors channels, graceful shutdown.
- ``account``: an event-sourced bank account, Apply and Rebuild.
- ``retry_dlq``: retry with exponential backoff and a dead-letter queue.
- ``signup``: email, analytics and CRM services reacting to UserSignedUp, with monitoring.
"""
