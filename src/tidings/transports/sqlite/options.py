"""The SQLite transport's options, and its URLs: ``sqlite:///events.db?lease=10&poll=0.5``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from tidings.transports.kit.options import query_options
from tidings.urls import redact

__all__ = ["SqliteOptions"]


@dataclass(frozen=True, slots=True)
class SqliteOptions:
    """Settings of the SQLite transport; every field can be given as a URL query parameter:
    ``sqlite:///events.db?lease=10&poll=0.5``."""

    path: str
    """The database file: ``sqlite:///events.db`` is relative, ``sqlite:////srv/a.db`` absolute."""
    lease: float = 30.0
    """Seconds a delivery stays leased to a subscription that stopped renewing it (crashed)."""
    poll: float = 0.2
    """Seconds between looks for messages that other processes wrote to the file."""
    busy_timeout: float = 5.0
    """Seconds a publish waits for another connection's write lock (a backup, a VACUUM) before
    raising ServiceUnavailable, with nothing stored; subscriptions wait as long as it takes."""
    synchronous: Literal["normal", "full"] = "normal"
    """``normal`` survives process crashes; ``full`` also survives power loss, at a cost."""
    spare_mb: float = 32.0
    """Megabytes of free space the file keeps for new messages once they were deleted; the
    rest is given back to the file system (in files this version created; see the docs)."""

    @classmethod
    def from_url(cls, url: str) -> SqliteOptions:
        """Parse ``sqlite:///path?option=value``; raises ValueError for anything else."""
        parts = urlsplit(url)
        if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/"):
            raise ValueError(f"expected sqlite:///path/to/file.db, got {redact(url)!r}")
        path = parts.path[1:]
        if not path:
            raise ValueError(f"no database file in {redact(url)!r}")
        values = query_options(cls, parts.query, scheme="sqlite", exclude=("path",))
        options = cls(path, **values)  # type: ignore[arg-type]  # each value parsed by its type
        if min(options.lease, options.poll, options.busy_timeout) <= 0:
            raise ValueError("lease, poll and busy_timeout must be positive")
        if options.spare_mb < 0:
            raise ValueError("spare_mb cannot be negative")
        return options
