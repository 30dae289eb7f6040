"""Where a work area's files live, and which of them may ever be removed.

Work files are named ``<owner>.glance-convert.<suffix>`` where the owner is
the image id, so Glance's staging housekeeper, which removes
``<image-id>.*`` files of deleted images, also cleans them.  The reaper
removes nothing but such names directly in the work directory.

Lock and ledger files are ``<lock_dir>/glance-convert-<key>...``, where
``<key>`` is derived from the real path of the work directory: two Glance
nodes on one machine with different work directories have separate slots
and ledgers even when they share a lock directory.  These names never look
like ``<image-uuid>.*``, so the housekeeper leaves them alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re

from glance_convert import errors

LOG = logging.getLogger(__name__)

WORK_FILE_TAG = '.glance-convert.'
_SAFE_OWNER = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$')
_SAFE_SUFFIX = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$')


def work_file(work_dir: str, owner: str, suffix: str) -> str:
    """``<work_dir>/<owner>.glance-convert.<suffix>``: the one naming rule
    of work files, which the reaper and Glance's staging housekeeper both
    remove after a crash."""
    return os.path.join(work_dir, owner + WORK_FILE_TAG + suffix)


def remove(path: str | None) -> None:
    """Remove ``path`` if it exists; log, never raise.

    Used on the way out of a failure too, where an error of its own
    would hide the one that matters.
    """
    if not path:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        LOG.exception('Could not remove %s', path)


class Layout:
    """The file names of the work area in ``work_dir``.

    :param lock_dir: directory of the lock and ledger files; None means
        ``work_dir``.
    """

    def __init__(self, work_dir: str, lock_dir: str | None):
        self.work_dir = os.path.realpath(work_dir)
        self.lock_dir = os.path.realpath(lock_dir or work_dir)
        self.key = hashlib.sha256(
            self.work_dir.encode('utf-8', 'surrogateescape')).hexdigest()[:12]
        prefix = os.path.join(self.lock_dir, 'glance-convert-%s' % self.key)
        self.ledger_path = prefix + '.ledger'
        self.ledger_lock_path = prefix + '.ledger.lock'
        self.lookout_lock_path = prefix + '.lookout.lock'
        self._slot_prefix = prefix + '-slot-'

    def slot_path(self, i: int) -> str:
        return '%s%d.lock' % (self._slot_prefix, i)

    def work_path(self, owner: str, suffix: str) -> str:
        check_owner(owner)
        if not _SAFE_SUFFIX.match(suffix):
            raise ValueError('unsafe work file suffix %r' % suffix)
        return os.path.join(self.work_dir, owner + WORK_FILE_TAG + suffix)

    def check_work_file(self, owner: str, path: str) -> str:
        """``path`` normalised, if it is a work file name of ``owner``."""
        directory, name = os.path.split(path)
        normal = os.path.join(self.work_dir, name)
        if (os.path.realpath(directory or '.') != self.work_dir
                or not name.startswith(owner + WORK_FILE_TAG)
                or not self.is_work_file(normal)):
            raise ValueError('%r is not a work file of %s in %s'
                             % (path, owner, self.work_dir))
        return normal

    def is_work_file(self, path: str) -> bool:
        """Only files this module names may ever be removed by the reaper."""
        name = os.path.basename(path)
        owner, tag, suffix = name.partition(WORK_FILE_TAG)
        return (os.path.dirname(path) == self.work_dir and tag != ''
                and _SAFE_OWNER.match(owner) is not None
                and _SAFE_SUFFIX.match(suffix) is not None)

    def prepare(self) -> None:
        """Create the work and lock directories if needed."""
        for d in (self.work_dir, self.lock_dir):
            try:
                os.makedirs(d, exist_ok=True)
            except OSError as e:
                raise unusable('cannot create %s: %s' % (d, e))


def check_owner(owner: str) -> None:
    if not isinstance(owner, str) or not _SAFE_OWNER.match(owner):
        raise ValueError('unsafe owner %r for work file names' % (owner,))


def open_lock_file(path: str) -> int:
    """A new open file description of ``path``, for one ``flock``.

    Close-on-exec, so qemu-img never inherits a lock.
    """
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


@contextlib.contextmanager
def flocked(path: str, operation: int):
    """Hold ``flock(operation)`` on the lock file ``path`` in the block.

    A lock file that cannot be opened makes the work area unusable.
    """
    try:
        fd = open_lock_file(path)
    except OSError as e:
        raise unusable('cannot open %s: %s' % (path, e))
    try:
        fcntl.flock(fd, operation)
        yield fd
    finally:
        os.close(fd)


def unusable(detail: str) -> errors.WorkspaceError:
    """The error for a work area whose files cannot be used."""
    LOG.error('Conversion work area unusable: %s', detail)
    return errors.WorkspaceError(
        'The image cannot be converted because the conversion work area of '
        'this host is not usable; please contact the cloud operator', detail)
