"""When a fault strikes: on the first N chances, or on each with a seeded probability."""

from __future__ import annotations

import random
from typing import Protocol

__all__ = ["Chance", "Times", "Trigger"]


class Trigger(Protocol):
    """Asked once per chance a fault has (a handler call, a delivery, a publish, a fetch)."""

    def strikes(self) -> bool:
        """Whether the fault strikes this time. Triggers keep state: give each fault its own."""
        ...


class Times:
    """Strikes on the first ``n`` chances, then never again."""

    def __init__(self, n: int) -> None:
        if n < 0:
            raise ValueError("n must not be negative")
        self.left = n

    def strikes(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True

    def __repr__(self) -> str:
        return f"Times({self.left} left)"


class Chance:
    """Strikes with probability ``p`` on each chance, drawing from ``random.Random(seed)``: the
    same seed and the same sequence of chances strike the same way every run."""

    def __init__(self, p: float, *, seed: int = 0) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError("p must be between 0 and 1")
        self.p = p
        self.seed = seed
        self._random = random.Random(seed)

    def strikes(self) -> bool:
        return self._random.random() < self.p

    def __repr__(self) -> str:
        return f"Chance({self.p:g}, seed={self.seed})"
