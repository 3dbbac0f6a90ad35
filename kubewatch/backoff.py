"""Capped exponential backoff with jitter, for reconnecting to an unreachable API server."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Exponential backoff with jitter for reconnecting to the API server."""

    initial: float = 0.5
    cap: float = 30.0
    factor: float = 2.0
    # Each delay is scaled by a random factor in [1 - jitter, 1], so that many replicas
    # that lost the API server together do not come back in lockstep.
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def next(self) -> float:
        base = min(self.cap, self.initial * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        return base * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self.attempts = 0
