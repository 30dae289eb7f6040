"""The named phases of one import, and the time each took.

KubeVirt CDI's data processor names every phase of an import; here the
names are written once, so that the import's log line (and a metric,
later) can say where the time went: the upload's container opened, its
bytes inspected, qemu-img's verdicts, the slot and space reserved, the
conversion, the output verified, the result handed on to Glance.
"""

from __future__ import annotations

import contextlib
import time

OPEN_CONTAINER = 'open container'
INSPECT = 'inspect'
CHECK = 'check'
RESERVE = 'reserve'
CONVERT = 'convert'
VERIFY = 'verify'
HAND_ON = 'hand on'

#: Every phase, in the order an import goes through them.
ORDER = (OPEN_CONTAINER, INSPECT, CHECK, RESERVE, CONVERT, VERIFY, HAND_ON)


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
