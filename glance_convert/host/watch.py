"""A background look-out for conversions whose glance-api worker died.

When the WSGI server (gunicorn, uWSGI) loses one worker process, it starts
a new one; glance-api as a whole does not restart, so nothing runs
``glance-convert recover``, and the image of an import the dead worker was
running stays locked by Glance: the user's next import of it is refused
with 409 Conflict.  Recovery on the next import on the host does not help
that user if nobody else imports.  So every process that has loaded the
plugin looks at the ledger every few seconds (one read of a small file,
no lock) and runs recovery when a holder died.
"""

import logging
import os
import threading
from collections.abc import Callable

from glance_convert.host import ledger

LOG = logging.getLogger(__name__)

#: Seconds between two looks at the ledger.
INTERVAL = 5.0

_lock = threading.Lock()
_watch: 'OrphanWatch | None' = None


class OrphanWatch:
    """Calls ``recover(workspace)`` when the ledger names dead holders.

    :param get_workspace: returns the host's workspace (read each time, so
        a configuration error is logged, not fatal).
    :param recover: runs recovery; it claims the records, so concurrent
        watchers of the host's other workers never release one twice.
    """

    def __init__(self, get_workspace: Callable[[], object],
                 recover: Callable[[object], None],
                 interval: float = INTERVAL):
        self.get_workspace = get_workspace
        self.recover = recover
        self.interval = interval
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='glance-convert-orphan-watch')

    def start(self) -> 'OrphanWatch':
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def check(self) -> bool:
        """One look; True if recovery ran."""
        ws = self.get_workspace()
        if not any(ledger.is_due(r) for r in ws.peek_orphans()):
            return False
        self.recover(ws)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - try again next time
                LOG.exception('Looking for interrupted conversions failed')


def ensure_started(get_workspace: Callable[[], object],
                   recover: Callable[[object], None],
                   interval: float = INTERVAL) -> OrphanWatch:
    """The watch of this process, started on first use.

    A process forked from one that had a watch (a WSGI server preloading
    the application) gets its own: threads do not survive a fork.
    """
    global _watch
    with _lock:
        if _watch is None or _watch.pid != os.getpid():
            _watch = OrphanWatch(get_workspace, recover, interval).start()
        return _watch
