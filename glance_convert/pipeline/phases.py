"""The named phases of one import, how they run, and the time each took.

As in KubeVirt CDI's data processor, every phase has a name and each step
returns the name of the phase that comes next, so the order lives with
the steps that decide it (an upload stored as it is leaves after its
checks).  The names are written once: the import's log line, its summary
line and the ``phase`` label of the metrics all use them.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Mapping

PREPARE = 'prepare'
OPEN_CONTAINER = 'open container'
INSPECT = 'inspect'
CHECK = 'check'
RESERVE = 'reserve'
CONVERT = 'convert'
VERIFY = 'verify'
DESCRIBE = 'describe'
HASH = 'hash'
HAND_ON = 'hand on'

#: Every phase, in the order an import goes through them, and what it is.
DESCRIPTIONS = {
    PREPARE: 'the image, the configuration and the import record read',
    OPEN_CONTAINER: 'a compressed or OVA upload unpacked (slot wait '
                    'included); nothing for a bare one',
    INSPECT: 'the upload\'s bytes judged, without qemu-img',
    CHECK: 'qemu-img info and check, and their verdicts',
    RESERVE: 'a conversion slot and the output\'s space (waits included)',
    CONVERT: 'qemu-img convert',
    VERIFY: 'the output judged as an upload of its own format',
    DESCRIBE: 'the guest\'s disk read for the properties it needs to boot',
    HASH: 'waiting for the SHA-256 of the upload, once converted',
    HAND_ON: 'the image\'s properties set and the file handed to Glance',
}
ORDER = tuple(DESCRIPTIONS)

#: A wait, timed within the phase that waited (so counted twice).
SLOT_WAIT = 'slot wait'
WAITS = {SLOT_WAIT: 'waiting for one of the host\'s conversion slots '
                    '(part of open container or reserve)'}

#: What a step returns when nothing comes after it.
DONE = None


def label(name: str) -> str:
    """``name`` as a metric label value and a log field: ``hand_on``."""
    return name.replace(' ', '_')


class Timings:
    """Seconds spent in each phase, and each wait, of one import."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str):
        """Count the time of the block (also when it raises) to ``name``."""
        if name not in ORDER and name not in WAITS:
            raise ValueError('no such phase: %r' % name)
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = (self.seconds.get(name, 0.0)
                                  + time.monotonic() - started)

    def summary(self) -> str:
        """``inspect 0.01 s, check 0.12 s, ...``: the phases that ran, in
        phase order, then the waits."""
        return ', '.join('%s %.2f s' % (name, self.seconds[name])
                         for name in ORDER + tuple(WAITS)
                         if name in self.seconds)


def run(first: str | None, steps: Mapping[str, Callable[[], str | None]],
        timings: Timings) -> None:
    """Run the phases from ``first`` until one returns :data:`DONE`,
    each timed under its name."""
    name = first
    while name is not DONE:
        step = steps[name]
        with timings.phase(name):
            name = step()
