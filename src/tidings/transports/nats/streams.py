"""The transport's streams on the server: created when missing, given the subjects they lack.

A stream made before partitions existed (by an earlier tidings or by hand) stores only
``<prefix>.>``, not the partition subjects ``<prefix>#.>`` keyed messages are published on:
JetStream would refuse those publishes. :func:`ensure_stream` adds the missing subjects to the
existing stream's configuration (an update of that stream, nothing else in it changes); when
JetStream refuses the update (another stream holds those subjects), it raises a TransportError
saying what to change.
"""

from __future__ import annotations

from dataclasses import replace

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from tidings.errors import TransportError

__all__ = ["ensure_stream"]

_SUBJECTS_OVERLAP = 10065
_STREAM_NAME_IN_USE = 10058


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream ``config`` describes, or add its subjects to the existing stream of
    that name; its other settings are kept as they are. Raises TransportError when JetStream
    refuses to add them, and the client's errors otherwise."""
    name = config.name
    assert name is not None
    try:
        await js.add_stream(config)
        return
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code not in (_STREAM_NAME_IN_USE, _SUBJECTS_OVERLAP):
            raise
        try:
            existing = await js.stream_info(name)  # or created by another transport just now
        except nats.js.errors.NotFoundError:
            raise exc from None  # an overlap with another stream's subjects
    have = existing.config.subjects or []
    missing = [subject for subject in config.subjects or [] if subject not in have]
    if not missing:
        return
    try:
        await js.update_stream(replace(existing.config, subjects=[*have, *missing]))
    except nats.js.errors.BadRequestError as exc:
        raise TransportError(
            f"the NATS stream {name} lacks the subjects {', '.join(missing)} and JetStream "
            f"refused to add them ({exc.description}): add them to {name} yourself (nats "
            f"stream edit {name} --subjects ...) or name a stream of tidings' own with ?stream="
        ) from exc
