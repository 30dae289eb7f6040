"""The named phases of one import, how they run, and the time each took.

As in KubeVirt CDI's data processor, every phase has a name and each step
returns the name of the phase that comes next, so the order lives with
the steps that decide it (an upload stored as it is leaves after its
checks).  The names are written once, so the import's log line can say
where the time went.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Mapping

OPEN_CONTAINER = 'open container'
INSPECT = 'inspect'
CHECK = 'check'
RESERVE = 'reserve'
CONVERT = 'convert'
VERIFY = 'verify'
HAND_ON = 'hand on'

#: Every phase, in the order an import goes through them.
ORDER = (OPEN_CONTAINER, INSPECT, CHECK, RESERVE, CONVERT, VERIFY, HAND_ON)
#: What a step returns when nothing comes after it.
DONE = None


class Timings:
    """Seconds spent in each phase of one import."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str):
        """Count the time of the block (also when it raises) to ``name``."""
        if name not in ORDER:
            raise ValueError('no such phase: %r' % name)
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = (self.seconds.get(name, 0.0)
                                  + time.monotonic() - started)

    def summary(self) -> str:
        """``inspect 0.01 s, check 0.12 s, ...``: the phases that ran, in
        phase order."""
        return ', '.join('%s %.2f s' % (name, self.seconds[name])
                         for name in ORDER if name in self.seconds)


def run(first: str | None, steps: Mapping[str, Callable[[], str | None]],
        timings: Timings) -> None:
    """Run the phases from ``first`` until one returns :data:`DONE`,
    each timed under its name."""
    name = first
    while name is not DONE:
        step = steps[name]
        with timings.phase(name):
            name = step()
