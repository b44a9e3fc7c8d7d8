"""Pluggable stopping criteria for AGH (one small protocol, as in PyVRP).

A criterion is called once per completed start with the best cost so far and says whether to
stop. Iteration and no-improvement criteria are deterministic; the time criterion is a safety net
that makes results depend on the machine, so the default uses only the first two.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol


class StoppingCriterion(Protocol):
    def __call__(self, best_cost: float) -> bool: ...


@dataclass
class MaxIterations:
    limit: int
    count: int = 0

    def __call__(self, best_cost: float) -> bool:
        self.count += 1
        return self.count >= self.limit


@dataclass
class NoImprovement:
    limit: int
    best: float = float("inf")
    since: int = 0

    def __call__(self, best_cost: float) -> bool:
        if best_cost < self.best - 1e-9:
            self.best, self.since = best_cost, 0
        else:
            self.since += 1
        return self.since >= self.limit


@dataclass
class MaxRuntime:
    """A wall-clock limit from ``start``; also the method's deadline for the phases after the
    starts (``math.inf`` seconds: none), so that each phase gets what is left, not the whole."""

    seconds: float
    start: float = field(default_factory=time.perf_counter)

    def __call__(self, best_cost: float) -> bool:
        return self.passed

    @property
    def passed(self) -> bool:
        return time.perf_counter() - self.start >= self.seconds

    def left(self, cap: float = math.inf) -> float:
        """Seconds left before the limit, at most ``cap`` (0 once it has passed)."""
        return max(0.0, min(cap, self.seconds - (time.perf_counter() - self.start)))


@dataclass
class AnyOf:
    criteria: list[StoppingCriterion]

    def __call__(self, best_cost: float) -> bool:
        # Every criterion sees every call (counters advance together).
        return any([c(best_cost) for c in self.criteria])
