"""Something opened by ``start()`` and closed by ``aclose()``, usable as ``async with``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

__all__ = ["Resource"]


class Resource(ABC):
    """``async with`` starts it and closes it on the way out, whatever the block raised
    (which goes on)."""

    @abstractmethod
    async def start(self) -> None:
        """Open what it needs (connections, files, tasks)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close what :meth:`start` opened."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
