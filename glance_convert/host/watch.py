"""The look-out for conversions whose glance-api worker died.

When the WSGI server (gunicorn, uWSGI) loses one worker process, it starts
a new one; glance-api as a whole does not restart, so nothing runs
``glance-convert recover``, and the image of an import the dead worker was
running stays locked by Glance: the user's next import of it is refused
with 409 Conflict.  Recovery on the next import on the host does not help
that user if nobody else imports.  So a look-out reads the ledger every
few seconds (one read of a small file, no lock, no database) and runs
recovery when a holder died.  Two kinds run it: ``glance-convert recover
--follow`` (a service beside glance-api, in the foreground: :meth:`run`),
and every worker that has run an import (a thread:
:func:`ensure_started`).

The service holds a shared ``flock`` on the work area's look-out lock file
for its whole life, so that ``check-config`` can tell whether one runs
(:func:`is_following`) without a pid file that could outlive it.
"""

import contextlib
import errno
import fcntl
import logging
import os
import threading
from collections.abc import Callable

from glance_convert.host import layout as layout_
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

    def _look(self) -> None:
        try:
            self.check()
        except Exception:  # noqa: BLE001 - try again next time
            LOG.exception('Looking for interrupted conversions failed')

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._look()

    def run(self, stop: threading.Event) -> None:
        """Look now and every interval in this thread, until ``stop``."""
        self._look()
        while not stop.wait(self.interval):
            self._look()


@contextlib.contextmanager
def following(layout: layout_.Layout):
    """Mark this process as the work area's look-out while in the block.

    Several may hold the mark at once: they share the work through the
    ledger's claims, never releasing one import twice.
    """
    layout.prepare()
    path = layout.lookout_lock_path
    with layout_.flocked(path, fcntl.LOCK_SH):
        yield path


def is_following(layout: layout_.Layout) -> bool:
    """Whether a look-out service runs for the work area of ``layout``.

    Creates nothing: a look from another user (root running check-config)
    must not leave files glance-api cannot use.
    """
    try:
        fd = os.open(layout.lookout_lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        return e.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)
    return False


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
