"""Progress of a search as periodic log lines, for runs without a terminal (CI, nohup, SLURM).

A progress bar needs a terminal; written to a file it is either missing or a mess of carriage
returns. Without one the search logs ``trials n/N``, the best accuracy so far and an ETA at most
every ``interval`` seconds, and once when the budget is reached.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

__all__ = ["ProgressLog", "duration"]

logger = logging.getLogger("convnas.progress")


def duration(seconds: float) -> str:
    """``75`` -> ``"1m15s"``; ``3725`` -> ``"1h02m"``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLog:
    """Log ``trials n/N`` lines; ``label`` names what the accuracy is (one-shot or trained)."""

    def __init__(
        self,
        total: int,
        *,
        label: str = "",
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.label, self.interval, self.clock = total, label, interval, clock
        self.started = clock()
        self._last_time: float | None = None
        self._last_done = -1

    def update(self, done: int, best: float | None) -> str | None:
        """Log (and return) a line if ``done`` moved and the interval passed, or at the end."""
        now = self.clock()
        due = self._last_time is None or now - self._last_time >= self.interval
        if done == self._last_done or not (due or done >= self.total):
            return None
        self._last_time, self._last_done = now, done
        elapsed = now - self.started
        eta = elapsed / done * (self.total - done) if done else math.inf
        accuracy = (
            "" if best is None else f"; best {self.label}accuracy {best:.4f}".replace("  ", " ")
        )
        line = (
            f"trials {min(done, self.total)}/{self.total}{accuracy}; elapsed {duration(elapsed)}"
            + ("" if done >= self.total else f", ETA {duration(eta)}")
        )
        logger.info("%s", line)
        return line
