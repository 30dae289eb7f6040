"""Conversion slots: how many conversions run at once on one host.

Slot *i* is an exclusive ``flock`` on its own lock file, tried without
blocking and polled; the kernel drops it when its holder dies, so a
crashed glance-api never leaks a slot.  Not an oslo.concurrency lock: that
is a ``lockf`` lock, owned by the whole process, so two threads of one
glance-api would both hold the same slot.  A flock belongs to the open
file, so threads and processes exclude each other alike.  Waiters queue
in the ledger, oldest first, so a freed slot goes to an import that has
waited long rather than to whichever poller wakes first.
"""

import contextlib
import errno
import fcntl
import logging
import os
import random
import time
from collections.abc import Callable, Iterator

from glance_convert import errors
from glance_convert.host import layout as layout_
from glance_convert.host import ledger as ledger_

LOG = logging.getLogger(__name__)

POLL_MIN = 0.1
POLL_MAX = 1.0


class Slots:
    """The ``max_concurrent`` conversion slots of one work area."""

    def __init__(self, layout: layout_.Layout, ledger: ledger_.Ledger,
                 max_concurrent: int):
        self.layout = layout
        self.ledger = ledger
        self.max_concurrent = max_concurrent

    def _try_slots(self, owner: str) -> int | None:
        """Take a free slot: return its open descriptor, or None."""
        order = list(range(self.max_concurrent))
        random.shuffle(order)  # spread contention over the slot files
        for i in order:
            path = self.layout.slot_path(i)
            try:
                fd = layout_.open_lock_file(path)
            except OSError as e:
                raise layout_.unusable('cannot open %s: %s' % (path, e))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    continue
                raise layout_.unusable('cannot lock %s: %s' % (path, e))
            # Leave a note for the operator: who holds this slot.
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, ('%s pid=%d\n' % (owner, os.getpid())).encode(),
                          0)
            except OSError:
                pass
            return fd
        return None

    def _my_turn(self, ticket: str | None) -> bool:
        ids = self.ledger.queue()
        ahead = ids.index(ticket) if ticket in ids else len(ids)
        return ahead < self.max_concurrent

    def _leave_queue(self, ticket: str) -> None:
        try:
            self.ledger.leave_queue(ticket)
        except errors.WorkspaceError as e:
            LOG.error('Cannot leave the conversion queue: %s', e.detail)

    @contextlib.contextmanager
    def hold(self, owner: str, timeout: float,
             on_wait: Callable[[], None] | None = None,
             should_cancel: Callable[[], bool] | None = None,
             ) -> Iterator[None]:
        """Hold one slot; see :meth:`Workspace.slot`."""
        if self.max_concurrent == 0:
            yield
            return
        self.layout.prepare()
        deadline = time.monotonic() + timeout
        delay = POLL_MIN
        ticket = None
        try:
            while True:
                fd = None
                if self._my_turn(ticket):
                    fd = self._try_slots(owner)
                if fd is not None:
                    break
                if ticket is None:
                    ticket = self.ledger.join_queue(owner)
                    LOG.info('Conversion of %s waits for one of %d '
                             'conversion slots', owner, self.max_concurrent)
                    if on_wait:
                        on_wait()
                if should_cancel and should_cancel():
                    raise errors.ConversionCancelled(
                        'The import was cancelled while it waited for a '
                        'conversion slot')
                now = time.monotonic()
                if now >= deadline:
                    raise errors.WorkspaceError(
                        'No conversion slot became free within %d seconds; '
                        'try the import again later' % timeout,
                        'all %d conversion slots in %s stayed busy for %d s'
                        % (self.max_concurrent, self.layout.lock_dir,
                           timeout))
                time.sleep(min(delay, deadline - now)
                           * random.uniform(0.8, 1.2))
                delay = min(delay * 1.5, POLL_MAX)
        finally:
            if ticket is not None:
                self._leave_queue(ticket)
        try:
            yield
        finally:
            os.close(fd)  # closing the only descriptor drops the flock
