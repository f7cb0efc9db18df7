"""Which worker process of an application this is.

``tidings run APP --workers N`` starts N processes of the application and numbers them 1 to N
in the ``TIDINGS_WORKER_ID`` environment variable; a worker it restarts keeps its number.
"""

from __future__ import annotations

import os

__all__ = ["WORKER_ID_ENV", "worker_id"]

WORKER_ID_ENV = "TIDINGS_WORKER_ID"


def worker_id() -> int | None:
    """This process's number among the workers ``tidings run --workers`` started (1 to N), or
    None when it was not started so (or the variable holds no number)."""
    value = os.environ.get(WORKER_ID_ENV, "")
    return int(value) if value.isdigit() else None
