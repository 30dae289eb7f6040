"""The work area of one host, as the conversion pipeline sees it.

A Glance host runs several glance-api processes, each converting in several
threads.  :class:`Workspace` makes them share the CPU and the work
directory: :meth:`~Workspace.slot` bounds the conversions running at once
(:mod:`~glance_convert.host.slots`), :meth:`~Workspace.reservation` keeps
them from filling the disk, recording each reservation and its work files
in the host's ledger (:mod:`~glance_convert.host.ledger`) before they are
created, so a conversion whose glance-api died is cleaned up by the next
access and its image can be released by recovery.  File names are in
:mod:`~glance_convert.host.layout`, process identities in
:mod:`~glance_convert.host.procs`.
"""

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator

from glance_convert import errors
from glance_convert import units
from glance_convert.host import layout as layout_
from glance_convert.host import ledger as ledger_
from glance_convert.host import procs
from glance_convert.host import slots as slots_
from glance_convert.host.layout import WORK_FILE_TAG  # noqa: F401 - API

LOG = logging.getLogger(__name__)

#: Failed releases of one interrupted import before recovery gives up.
MAX_RECOVERY_ATTEMPTS = 5


def _default_disk_space(path: str) -> tuple[int, int]:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


class Reservation:
    """Bytes reserved for one conversion and the work files it owns.

    Obtained from :meth:`Workspace.reservation`.  Work files are recorded
    in the ledger *before* they are created, so a crash at any point leaves
    nothing unaccounted for.  When the reservation ends, its bytes are
    released and:

    * after an exception, every work file not passed to :meth:`keep` is
      removed;
    * after a normal exit, the files stay recorded (without bytes) until
      they disappear (Glance deletes the converted file after uploading
      it) or their holder dies, and then the reaper removes them.
    """

    def __init__(self, workspace: 'Workspace', entry_id: str, owner: str,
                 nbytes: int, paths: list[str]):
        self._ws = workspace
        self._ledger = workspace._ledger
        self.entry_id = entry_id
        self.owner = owner
        self.nbytes = nbytes
        self.paths = list(paths)
        self.kept: list[str] = []

    def path(self, suffix: str) -> str:
        """Record and return the work file ``<owner>.glance-convert.<suffix>``.
        """
        return self.track(self._ws.work_path(self.owner, suffix))

    def track(self, path: str) -> str:
        """Record a work file named by the caller; return it.

        It must be ``<work_dir>/<owner>.glance-convert.<suffix>``: the
        reaper removes nothing else.
        """
        path = self._ws.check_work_file(self.owner, path)
        if path not in self.paths:
            self._ledger.update_entry(self.entry_id, add_path=path)
            self.paths.append(path)
        return path

    def add_process(self, pid: int) -> None:
        """Record a child process (qemu-img) to kill if the holder dies.

        Without it, a qemu-img whose glance-api was SIGKILLed would go on
        writing into a file that the reaper already unlinked.
        """
        self._ledger.update_entry(
            self.entry_id, add_process=[pid, procs.process_start_time(pid)])

    def keep(self, path: str) -> None:
        """Never remove ``path`` on release, even after an exception."""
        if path not in self.paths:
            raise ValueError('%s is not a work file of this reservation'
                             % path)
        self.kept.append(path)

    def forget(self, path: str) -> None:
        """Stop tracking ``path`` (the caller removed or moved it)."""
        self._ledger.update_entry(self.entry_id, remove_path=path)
        if path in self.paths:
            self.paths.remove(path)


class ImportRecord:
    """The ledger's record of one import task, from its start to its end.

    Made by :meth:`Workspace.begin_import`.  While it exists, the death of
    its glance-api process leaves an orphan record that recovery uses to
    release the image, whatever the import was doing: waiting for a slot
    or for space, inspecting, converting, or handing its file to Glance's
    upload.
    """

    def __init__(self, ledger: ledger_.Ledger, entry_id: str, owner: str,
                 info: dict):
        self._ledger = ledger
        self.entry_id = entry_id
        self.owner = owner
        self.info = dict(info)

    def end(self, watch: str | None = None) -> None:
        """The task is done.  ``watch``: the file handed to Glance's upload;
        the record stays until Glance deletes it after the upload, so a
        crash during the upload is recovered too."""
        self._ledger.end_import(self.entry_id, watch=watch)

    def abandon(self, reason: str) -> None:
        """Leave the image to recovery: the task could not release it."""
        self._ledger.abandon_import(self.entry_id, reason, self.owner,
                                    self.info)


class Workspace:
    """Per-host conversion slots and space reservations in ``work_dir``.

    :param work_dir: directory of the work files.
    :param lock_dir: directory of the lock and ledger files (Glance's
        ``[oslo_concurrency] lock_path``); None means ``work_dir``.  It
        must be local to the host.
    :param max_concurrent: conversions at once on the host; 0: no limit.
    :param reserved_bytes: free space that reservations must leave.
    :param max_bytes: most bytes all work files may take; 0: no cap.
    :param disk_space: ``f(path) -> (total, available)`` bytes of the
        file system; for tests.
    """

    def __init__(self, work_dir: str, *, lock_dir: str | None,
                 max_concurrent: int, reserved_bytes: int, max_bytes: int,
                 disk_space: Callable[[str], tuple[int, int]] | None = None):
        if max_concurrent < 0 or reserved_bytes < 0 or max_bytes < 0:
            raise ValueError('limits must not be negative')
        self._layout = layout_.Layout(work_dir, lock_dir)
        self._ledger = ledger_.Ledger(self._layout)
        self._slots = slots_.Slots(self._layout, self._ledger,
                                   max_concurrent)
        self.reserved_bytes = reserved_bytes
        self.max_bytes = max_bytes
        self._disk_space = disk_space or _default_disk_space

    work_dir = property(lambda self: self._layout.work_dir)
    lock_dir = property(lambda self: self._layout.lock_dir)
    key = property(lambda self: self._layout.key)
    ledger_path = property(lambda self: self._layout.ledger_path)
    max_concurrent = property(lambda self: self._slots.max_concurrent)

    def work_path(self, owner: str, suffix: str) -> str:
        """The work file ``<work_dir>/<owner>.glance-convert.<suffix>``."""
        return self._layout.work_path(owner, suffix)

    def check_work_file(self, owner: str, path: str) -> str:
        """``path`` normalised, if it is a work file name of ``owner``."""
        return self._layout.check_work_file(owner, path)

    # ---------------------------------------------------------------- slots

    def slot(self, owner: str, timeout: float,
             on_wait: Callable[[], None] | None = None,
             should_cancel: Callable[[], bool] | None = None,
             ) -> contextlib.AbstractContextManager[None]:
        """Hold one of the host's ``max_concurrent`` conversion slots.

        Waits up to ``timeout`` seconds, calling ``on_wait()`` once when it
        has to wait and polling ``should_cancel()``.  Raises
        :class:`~glance_convert.errors.WorkspaceError` on timeout and
        :class:`~glance_convert.errors.ConversionCancelled` on cancel.
        """
        return self._slots.hold(owner, timeout, on_wait=on_wait,
                                should_cancel=should_cancel)

    # --------------------------------------------------------------- imports

    def begin_import(self, owner: str, info: dict) -> ImportRecord:
        """Record an import task of image ``owner`` (``info``: its task id).

        Call it first thing in the task: the record is what makes an
        import that dies before it reserves anything recoverable.
        """
        layout_.check_owner(owner)
        return ImportRecord(self._ledger,
                            self._ledger.begin_import(owner, info), owner,
                            info)

    # --------------------------------------------------------- reservations

    def _assess(self, ledger: dict, nbytes: int) -> tuple[bool, bool, dict]:
        """(fits now, could ever fit, numbers for the messages)."""
        total, avail = self._disk_space(self.work_dir)
        pending = held = written = 0
        for e in ledger['entries'].values():
            used = sum(units.allocated_bytes(p) for p in e['paths'])
            written += used
            # Bytes promised but not written yet are not missing from
            # ``avail`` yet; bytes already written are.
            pending += max(0, e['bytes'] - used)
            if ledger_.is_active(e):
                # max_workspace_bytes bounds conversions in progress; the
                # output of a finished one waits for its upload and goes.
                held += max(e['bytes'], used)
        room = avail - self.reserved_bytes - pending
        # Once the other conversions are done and Glance has uploaded and
        # removed their files.
        room_ever = min(total, avail + written) - self.reserved_bytes
        if self.max_bytes:
            room = min(room, self.max_bytes - held)
            room_ever = min(room_ever, self.max_bytes)
        numbers = {'need': nbytes, 'room': max(room, 0),
                   'room_ever': max(room_ever, 0)}
        return nbytes <= room, nbytes <= room_ever, numbers

    @contextlib.contextmanager
    def reservation(self, owner: str, nbytes: int, *,
                    paths: tuple[str, ...] | list[str] = (),
                    timeout: float = 0,
                    on_wait: Callable[[], None] | None = None,
                    should_cancel: Callable[[], bool] | None = None,
                    info: dict | None = None) -> Iterator[Reservation]:
        """Reserve ``nbytes`` of the work directory for ``owner``.

        ``owner`` is the image id: it names the work files.  ``info`` (e.g.
        the task id) is kept with the entry and reported by
        :meth:`take_orphans` if the holder dies.  When the space is taken
        by other conversions and would be enough once they finish, waits up
        to ``timeout`` seconds (0: fail at once).  Raises
        :class:`~glance_convert.errors.WorkspaceError` with a sentence for
        the end user when the image does not fit.
        """
        layout_.check_owner(owner)
        if nbytes < 0:
            raise ValueError('negative reservation')
        paths = [self.check_work_file(owner, p) for p in paths]
        deadline = time.monotonic() + timeout
        delay = slots_.POLL_MIN
        waited = False
        entry_id = uuid.uuid4().hex
        while True:
            with self._ledger.locked() as ledger:
                fits, fits_ever, n = self._assess(ledger, nbytes)
                if fits:
                    ledger['entries'][entry_id] = ledger_.new_entry(
                        owner, nbytes, paths, info)
            if fits:
                break
            if not fits_ever:
                raise errors.WorkspaceError(
                    'Not enough space to convert this image: it needs %s '
                    'of work space and this host can provide at most %s'
                    % (units.human_size(n['need']),
                       units.human_size(n['room_ever'])),
                    'image %s needs %d bytes in %s; at most %d bytes can be '
                    'reserved there (reserved_space_mb=%d MiB, '
                    'max_workspace_bytes=%d)'
                    % (owner, nbytes, self.work_dir, n['room_ever'],
                       self.reserved_bytes // 2 ** 20, self.max_bytes))
            now = time.monotonic()
            if now >= deadline:
                raise errors.WorkspaceError(
                    'Not enough space to convert this image now: it needs %s '
                    'of work space and only %s is free while other images '
                    'are converted; try the import again later'
                    % (units.human_size(n['need']),
                       units.human_size(n['room'])),
                    'image %s needs %d bytes in %s; %d bytes are available '
                    'after other reservations' % (owner, nbytes,
                                                  self.work_dir, n['room']))
            if not waited:
                waited = True
                if on_wait:
                    on_wait()
            if should_cancel and should_cancel():
                raise errors.ConversionCancelled(
                    'The import was cancelled while it waited for work space')
            time.sleep(min(delay, deadline - now))
            delay = min(delay * 1.5, slots_.POLL_MAX)

        res = Reservation(self, entry_id, owner, nbytes, paths)
        LOG.debug('Reserved %d bytes in %s for %s', nbytes, self.work_dir,
                  owner)
        try:
            yield res
        except BaseException:
            self._release(res, failed=True)
            raise
        self._release(res, failed=False)

    def _release(self, res: Reservation, failed: bool) -> None:
        # Remove the files first, then the entry: a crash in between leaves
        # an entry whose files the reaper finds gone, never a file that no
        # entry names.
        for path in res.paths:
            if not failed or path in res.kept:
                continue
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                LOG.error('Cannot remove work file %s: %s', path, e)
        try:
            self._ledger.finish_entry(
                res.entry_id, only_paths=res.kept if failed else None)
        except errors.WorkspaceError as e:
            # Never mask the caller's own exception; the entry is reaped
            # when this process ends.
            LOG.error('Cannot release reservation of %s: %s', res.owner,
                      e.detail)

    # -------------------------------------------------------------- reaping

    def reap_orphans(self) -> list[str]:
        """Remove work files and entries whose holder died; return the paths.

        Every ledger access does this too; call it when the plugin is
        loaded so a restarted glance-api cleans up at once.
        """
        return self._ledger.reap()

    def take_orphans(self) -> list[dict]:
        """Return and forget the records of conversions whose holder died.

        Each record: ``{'owner', 'info', 'pid', 'removed', 'found_at'}``.
        The plugin uses them to put the images of interrupted imports back
        in a state where they can be imported again.
        """
        return self._ledger.take_orphans()

    def peek_orphans(self) -> list[dict]:
        """The records :meth:`take_orphans` would return, changing nothing.

        Includes the entries of holders that died since the last access,
        with the work files their reaping would remove in ``removed``.
        Creates and locks no file, so it may run as another user.  Raises
        :class:`~glance_convert.errors.WorkspaceError` when the ledger
        cannot be read (its ``detail`` says why).
        """
        return self._ledger.peek_orphans()

    def claim_orphans(self, due_only: bool = True) -> list[dict]:
        """Like :meth:`take_orphans`, but the records stay in the ledger,
        claimed by this process, until :meth:`settle_orphans`.

        A recovery killed half-way loses nothing: the claims of a dead
        process are void and the next recovery gets the records again.
        Concurrent recoveries get disjoint records.  A record whose
        release failed waits (10 s, 20 s, 40 s, then 60 s) before it is
        offered again, unless ``due_only`` is False.
        """
        return self._ledger.claim_orphans(due_only)

    def settle_orphans(self, done: list[dict],
                       retry: list[dict]) -> list[dict]:
        """Forget the claimed records in ``done`` (released, or nothing to
        do); offer those in ``retry`` again after a delay, with one more
        failed attempt counted.  Returns the records given up after
        ``MAX_RECOVERY_ATTEMPTS``, with an error in the log.
        """
        given_up = self._ledger.settle_orphans(done, retry,
                                               MAX_RECOVERY_ATTEMPTS)
        self._log_given_up(given_up)
        return given_up

    def return_orphans(self, records: list[dict]) -> list[dict]:
        """Put back orphan records whose release failed, for a later try.

        The next import on this host (or ``glance-convert recover``) takes
        them again.  A record is given up after
        ``MAX_RECOVERY_ATTEMPTS`` failed releases, with an error in the
        log.  Returns the records given up.
        """
        given_up = self._ledger.return_orphans(records,
                                               MAX_RECOVERY_ATTEMPTS)
        self._log_given_up(given_up)
        return given_up

    @staticmethod
    def _log_given_up(given_up: list[dict]) -> None:
        for record in given_up:
            LOG.error('Giving up releasing image %s of interrupted import '
                      'task %s after %d attempts; release it by hand',
                      record.get('owner'),
                      (record.get('info') or {}).get('task_id'),
                      record['attempts'])

    def usage(self) -> dict:
        """What the ledger holds now: for logs, the CLI and tests.

        Import records are not reservations: see :meth:`imports`.
        """
        entries = [e for e in self._ledger.entries()
                   if not ledger_.is_import(e)]
        return {'reservations': len([e for e in entries
                                     if ledger_.is_active(e)]),
                'reserved_bytes': sum(e['bytes'] for e in entries),
                'paths': [p for e in entries for p in e['paths']]}

    def imports(self) -> list[dict]:
        """The import records in the ledger: ``owner``, ``info``,
        ``active`` (False once handed to the upload) and ``watch``."""
        return [e for e in self._ledger.entries() if ledger_.is_import(e)]
