"""The work area of one host: conversion slots and space reservations.

A Glance host runs several glance-api processes, each converting in several
threads.  This module makes them share the CPU and the work directory:

* **Slots** bound the conversions that run at once on the host.  Slot *i*
  is an exclusive ``flock`` on
  ``<lock_dir>/glance-convert-<key>-slot-<i>.lock``, tried without
  blocking and polled.  The kernel drops a flock when its holder dies,
  so a crashed glance-api never leaks a slot.
* **Reservations** keep conversions from filling the disk.  A small JSON
  ledger (``glance-convert-<key>.ledger``), read and rewritten under an
  exclusive ``flock`` on a lock file beside it, lists every reservation
  with its holder's pid and process start time, its bytes and the work
  files it owns.  An entry whose holder died (its pid is gone, or was
  reused by a process that started at another time) is dropped whenever
  the ledger is read, its work files are removed and any qemu-img it
  started is killed.

Why plain ``fcntl.flock`` and not an oslo.concurrency external lock: the
latter is a ``fcntl.lockf`` (POSIX record) lock, which belongs to the
*process*: two threads of one glance-api would both "hold" the same slot,
and closing any descriptor of the file drops the lock of the whole process.
oslo.concurrency compensates with a process-wide semaphore, which is fine
for a short critical section but cannot express "N slots".  A flock
belongs to the open file description, so every acquisition opens the file
afresh and threads and processes exclude each other alike; it needs no
``lock_path`` to be configured and is released by the kernel on death.
Descriptors are opened close-on-exec, so qemu-img never inherits a slot.

``<key>`` is derived from the real path of the work directory: two Glance
nodes on one machine with different work directories have separate slots
and ledgers even when they share a lock directory.

Work files are named ``<owner>.glance-convert.<suffix>`` where the owner is
the image id, so Glance's staging housekeeper, which removes
``<image-id>.*`` files of deleted images, also cleans them.
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import random
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator

from glance_convert import errors
from glance_convert import units

LOG = logging.getLogger(__name__)

WORK_FILE_TAG = '.glance-convert.'
_SAFE_OWNER = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$')
_SAFE_SUFFIX = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$')
_POLL_MIN = 0.1
_POLL_MAX = 1.0
_MAX_ORPHAN_RECORDS = 100
#: Failed releases of one interrupted import before recovery gives up.
MAX_RECOVERY_ATTEMPTS = 5


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None if gone.

    Together with the pid it names a process uniquely: a reused pid belongs
    to a process that started later.
    """
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain
    # spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(b')') + 2:].split()
    # Field 3 (state) is fields[0]; field 22 (starttime) is fields[19].
    if fields and fields[0] in (b'Z', b'X'):
        return None  # a zombie holds no locks and writes no files
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _alive(pid: int, start: int | None) -> bool:
    return start is not None and process_start_time(pid) == start


def _default_disk_space(path: str) -> tuple[int, int]:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def _open_lock_file(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


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
            self._ws._update(self.entry_id, add_path=path)
            self.paths.append(path)
        return path

    def add_process(self, pid: int) -> None:
        """Record a child process (qemu-img) to kill if the holder dies.

        Without it, a qemu-img whose glance-api was SIGKILLed would go on
        writing into a file that the reaper already unlinked.
        """
        self._ws._update(self.entry_id,
                         add_process=[pid, process_start_time(pid)])

    def keep(self, path: str) -> None:
        """Never remove ``path`` on release, even after an exception."""
        if path not in self.paths:
            raise ValueError('%s is not a work file of this reservation'
                             % path)
        self.kept.append(path)

    def forget(self, path: str) -> None:
        """Stop tracking ``path`` (the caller removed or moved it)."""
        self._ws._update(self.entry_id, remove_path=path)
        if path in self.paths:
            self.paths.remove(path)


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
        self.work_dir = os.path.realpath(work_dir)
        self.lock_dir = os.path.realpath(lock_dir or work_dir)
        self.max_concurrent = max_concurrent
        self.reserved_bytes = reserved_bytes
        self.max_bytes = max_bytes
        self._disk_space = disk_space or _default_disk_space
        self.key = hashlib.sha256(
            self.work_dir.encode('utf-8', 'surrogateescape')).hexdigest()[:12]
        prefix = os.path.join(self.lock_dir, 'glance-convert-%s' % self.key)
        self.ledger_path = prefix + '.ledger'
        self._ledger_lock_path = prefix + '.ledger.lock'
        self._slot_prefix = prefix + '-slot-'
        self._me = (None, None)

    def _holder(self) -> tuple[int, int | None]:
        """(pid, start time) of this process, also after a fork."""
        pid = os.getpid()
        if self._me[0] != pid:
            self._me = (pid, process_start_time(pid))
        return self._me

    # ---------------------------------------------------------------- paths

    def work_path(self, owner: str, suffix: str) -> str:
        _check_owner(owner)
        if not _SAFE_SUFFIX.match(suffix):
            raise ValueError('unsafe work file suffix %r' % suffix)
        return os.path.join(self.work_dir, owner + WORK_FILE_TAG + suffix)

    def check_work_file(self, owner: str, path: str) -> str:
        """``path`` normalised, if it is a work file name of ``owner``."""
        directory, name = os.path.split(path)
        normal = os.path.join(self.work_dir, name)
        if (os.path.realpath(directory or '.') != self.work_dir
                or not name.startswith(owner + WORK_FILE_TAG)
                or not self._is_work_file(normal)):
            raise ValueError('%r is not a work file of %s in %s'
                             % (path, owner, self.work_dir))
        return normal

    def _is_work_file(self, path: str) -> bool:
        """Only files this module names may ever be removed by the reaper."""
        name = os.path.basename(path)
        owner, tag, suffix = name.partition(WORK_FILE_TAG)
        return (os.path.dirname(path) == self.work_dir and tag != ''
                and _SAFE_OWNER.match(owner) is not None
                and _SAFE_SUFFIX.match(suffix) is not None)

    def _prepare_dirs(self) -> None:
        for d in (self.work_dir, self.lock_dir):
            try:
                os.makedirs(d, exist_ok=True)
            except OSError as e:
                raise _unusable('cannot create %s: %s' % (d, e))

    # ---------------------------------------------------------------- slots

    def _slot_path(self, i: int) -> str:
        return '%s%d.lock' % (self._slot_prefix, i)

    def _try_slots(self, owner: str) -> int | None:
        """Take a free slot: return its open descriptor, or None."""
        order = list(range(self.max_concurrent))
        random.shuffle(order)  # spread contention over the slot files
        for i in order:
            try:
                fd = _open_lock_file(self._slot_path(i))
            except OSError as e:
                raise _unusable('cannot open %s: %s' % (self._slot_path(i), e))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    continue
                raise _unusable('cannot lock %s: %s' % (self._slot_path(i), e))
            # Leave a note for the operator: who holds this slot.
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, ('%s pid=%d\n' % (owner, os.getpid())).encode(),
                          0)
            except OSError:
                pass
            return fd
        return None

    @contextlib.contextmanager
    def slot(self, owner: str, timeout: float,
             on_wait: Callable[[], None] | None = None,
             should_cancel: Callable[[], bool] | None = None,
             ) -> Iterator[None]:
        """Hold one of the host's ``max_concurrent`` conversion slots.

        Waits up to ``timeout`` seconds, calling ``on_wait()`` once when it
        has to wait and polling ``should_cancel()``.  Raises
        :class:`~glance_convert.errors.WorkspaceError` on timeout and
        :class:`~glance_convert.errors.ConversionCancelled` on cancel.
        """
        if self.max_concurrent == 0:
            yield
            return
        self._prepare_dirs()
        deadline = time.monotonic() + timeout
        delay = _POLL_MIN
        ticket = None
        try:
            while True:
                fd = None
                if self._my_turn(ticket):
                    fd = self._try_slots(owner)
                if fd is not None:
                    break
                if ticket is None:
                    ticket = self._join_queue(owner)
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
                        % (self.max_concurrent, self.lock_dir, timeout))
                time.sleep(min(delay, deadline - now)
                           * random.uniform(0.8, 1.2))
                delay = min(delay * 1.5, _POLL_MAX)
        finally:
            if ticket is not None:
                self._leave_queue(ticket)
        try:
            yield
        finally:
            os.close(fd)  # closing the only descriptor drops the flock

    # Waiters queue in the ledger, oldest first.  Only the first
    # ``max_concurrent`` of them (and newcomers while fewer wait) try the
    # slot files, so a slot that frees up goes to an import that has waited
    # long, not to whichever poller happens to be awake: without this an
    # unlucky import could time out behind a stream of later ones.

    def _my_turn(self, ticket: str | None) -> bool:
        with self._locked_ledger() as ledger:
            ids = [w['id'] for w in ledger['queue']]
        ahead = ids.index(ticket) if ticket in ids else len(ids)
        return ahead < self.max_concurrent

    def _join_queue(self, owner: str) -> str:
        ticket = uuid.uuid4().hex
        pid, start = self._holder()
        with self._locked_ledger() as ledger:
            ledger['queue'].append({'id': ticket, 'owner': owner, 'pid': pid,
                                    'start': start, 'since': time.time()})
        return ticket

    def _leave_queue(self, ticket: str) -> None:
        try:
            with self._locked_ledger() as ledger:
                ledger['queue'] = [w for w in ledger['queue']
                                   if w['id'] != ticket]
        except errors.WorkspaceError as e:
            LOG.error('Cannot leave the conversion queue: %s', e.detail)

    # --------------------------------------------------------------- ledger

    @contextlib.contextmanager
    def _locked_ledger(self) -> Iterator[dict]:
        """Read, reap and (on normal exit) rewrite the ledger, under its lock.

        Yields the ledger ``{'entries': {id: entry}, 'orphans': [...]}``;
        changes the caller makes are saved atomically (write + rename), so
        a crash never leaves a half-written ledger.
        """
        self._prepare_dirs()
        try:
            fd = _open_lock_file(self._ledger_lock_path)
        except OSError as e:
            raise _unusable('cannot open %s: %s' % (self._ledger_lock_path, e))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            ledger = self._read()
            before = json.dumps(ledger, sort_keys=True)
            ledger['_removed'] = self._reap_dead(ledger)
            try:
                yield ledger
            finally:
                # Also after an error in the body: the reaping is done.
                del ledger['_removed']
                if json.dumps(ledger, sort_keys=True) != before:
                    self._write(ledger)
        finally:
            os.close(fd)

    def _read(self) -> dict:
        try:
            with open(self.ledger_path, encoding='utf-8') as f:
                data = json.load(f)
            if not isinstance(data.get('entries'), dict):
                raise ValueError('no entries')
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError, AttributeError) as e:
            # Never silently forget work files: keep the bad ledger aside.
            LOG.error('Conversion ledger %s is unreadable (%s); starting a '
                      'new one, old copy kept as %s.bad', self.ledger_path,
                      e, self.ledger_path)
            with contextlib.suppress(OSError):
                os.replace(self.ledger_path, self.ledger_path + '.bad')
            data = {}
        data.setdefault('entries', {})
        data.setdefault('orphans', [])
        data.setdefault('queue', [])
        return data

    def _write(self, ledger: dict) -> None:
        tmp = '%s.%d.%s.tmp' % (self.ledger_path, os.getpid(),
                                uuid.uuid4().hex[:8])
        try:
            with open(tmp, 'w', encoding='utf-8') as f:
                json.dump(ledger, f, indent=1, sort_keys=True)
            os.replace(tmp, self.ledger_path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise _unusable('cannot write %s: %s' % (self.ledger_path, e))

    def _reap_dead(self, ledger: dict) -> list[str]:
        """Drop entries of dead holders, kill their children, remove files.

        Also drops finished entries (no bytes, every file gone).
        """
        removed = []
        ledger['queue'] = [w for w in ledger['queue']
                           if _alive(w['pid'], w['start'])]
        entries = ledger['entries']
        for entry_id, e in list(entries.items()):
            if _alive(e['pid'], e.get('start')):
                if not e.get('active', True) and not any(
                        os.path.lexists(p) for p in e['paths']):
                    del entries[entry_id]  # kept files were consumed
                continue
            for pid, start in e.get('processes', []):
                if _alive(pid, start):
                    LOG.warning('Killing process %d left by dead conversion '
                                'of %s', pid, e['owner'])
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            gone = []
            for path in e['paths']:
                if not self._is_work_file(path):
                    LOG.error('Ledger names %r, which is not a work file; '
                              'not removing it', path)
                    continue
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                except OSError as err:
                    LOG.error('Cannot remove %s left by a dead conversion: '
                              '%s', path, err)
                    continue
                gone.append(path)
            LOG.warning('Conversion of %s by dead process %d released %d '
                        'bytes; removed %s', e['owner'], e['pid'], e['bytes'],
                        ', '.join(gone) or 'no files')
            removed.extend(gone)
            del entries[entry_id]
            ledger['orphans'].append({'owner': e['owner'],
                                      'info': e.get('info', {}),
                                      'pid': e['pid'], 'removed': gone,
                                      'found_at': time.time()})
        del ledger['orphans'][:-_MAX_ORPHAN_RECORDS]
        return removed

    def _update(self, entry_id: str, add_path: str | None = None,
                remove_path: str | None = None,
                add_process: list | None = None) -> None:
        with self._locked_ledger() as ledger:
            e = ledger['entries'].get(entry_id)
            if e is None:
                raise _unusable('reservation %s vanished from %s'
                                % (entry_id, self.ledger_path))
            if add_path and add_path not in e['paths']:
                e['paths'].append(add_path)
            if remove_path and remove_path in e['paths']:
                e['paths'].remove(remove_path)
            if add_process:
                e.setdefault('processes', []).append(add_process)

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
            if e.get('active', True):
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
        _check_owner(owner)
        if nbytes < 0:
            raise ValueError('negative reservation')
        paths = [self.check_work_file(owner, p) for p in paths]
        deadline = time.monotonic() + timeout
        delay = _POLL_MIN
        waited = False
        entry_id = uuid.uuid4().hex
        while True:
            with self._locked_ledger() as ledger:
                fits, fits_ever, n = self._assess(ledger, nbytes)
                if fits:
                    pid, start = self._holder()
                    ledger['entries'][entry_id] = {
                        'owner': owner, 'pid': pid,
                        'start': start, 'bytes': nbytes, 'paths': paths,
                        'processes': [], 'info': info or {}, 'active': True,
                        'since': time.time()}
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
            delay = min(delay * 1.5, _POLL_MAX)

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
            with self._locked_ledger() as ledger:
                e = ledger['entries'].get(res.entry_id)
                if e is None:
                    return
                if failed:
                    e['paths'] = [p for p in e['paths'] if p in res.kept]
                e['processes'] = []
                e['bytes'] = 0
                e['active'] = False
                if not any(os.path.lexists(p) for p in e['paths']):
                    del ledger['entries'][res.entry_id]
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
        with self._locked_ledger() as ledger:
            return list(ledger['_removed'])

    def take_orphans(self) -> list[dict]:
        """Return and forget the records of conversions whose holder died.

        Each record: ``{'owner', 'info', 'pid', 'removed', 'found_at'}``.
        The plugin uses them to put the images of interrupted imports back
        in a state where they can be imported again.
        """
        with self._locked_ledger() as ledger:
            orphans = ledger['orphans']
            ledger['orphans'] = []
        return orphans

    def return_orphans(self, records: list[dict]) -> list[dict]:
        """Put back orphan records whose release failed, for a later try.

        The next import on this host (or ``glance-convert recover``) takes
        them again.  A record is given up after
        ``MAX_RECOVERY_ATTEMPTS`` failed releases, with an error in the
        log.  Returns the records given up.
        """
        given_up = []
        if not records:
            return given_up
        with self._locked_ledger() as ledger:
            known = {_orphan_key(o) for o in ledger['orphans']}
            for record in records:
                record = dict(record,
                              attempts=int(record.get('attempts') or 0) + 1)
                if record['attempts'] >= MAX_RECOVERY_ATTEMPTS:
                    given_up.append(record)
                elif _orphan_key(record) not in known:
                    ledger['orphans'].append(record)
                    known.add(_orphan_key(record))
        for record in given_up:
            LOG.error('Giving up releasing image %s of interrupted import '
                      'task %s after %d attempts; release it by hand',
                      record.get('owner'),
                      (record.get('info') or {}).get('task_id'),
                      record['attempts'])
        return given_up

    def usage(self) -> dict:
        """What the ledger holds now: for logs, the CLI and tests."""
        with self._locked_ledger() as ledger:
            entries = list(ledger['entries'].values())
        return {'reservations': len([e for e in entries
                                     if e.get('active', True)]),
                'reserved_bytes': sum(e['bytes'] for e in entries),
                'paths': [p for e in entries for p in e['paths']]}


def _orphan_key(record: dict) -> tuple:
    return record.get('owner'), (record.get('info') or {}).get('task_id')


def staging_dir() -> str | None:
    """Glance's local staging directory, or None outside glance-api."""
    try:
        from glance import housekeeping
        return housekeeping.staging_store_path()
    except Exception:  # noqa: BLE001 - not in Glance, or not a file:// URI
        return None


def from_conf(work_dir: str | None = None, conf=None) -> Workspace:
    """The host's workspace as configured in ``[glance_convert]``.

    ``work_dir`` overrides the option (the task passes the directory of the
    staged file when the option is unset).  Lock and ledger files go to
    Glance's ``[oslo_concurrency] lock_path`` when set, else to the work
    directory.
    """
    from glance_convert import options
    conf = conf or options.CONF
    group = conf[options.GROUP]
    work_dir = work_dir or group.work_dir or staging_dir()
    if not work_dir:
        raise errors.WorkspaceError(
            'The image cannot be converted because the conversion work '
            'area of this host is not configured; please contact the cloud '
            'operator', '[glance_convert] work_dir is unset and the staging '
            'directory is not a local file:// URI')
    return Workspace(
        work_dir,
        lock_dir=options.glance_setting('oslo_concurrency', 'lock_path',
                                        conf),
        max_concurrent=group.max_concurrent_conversions,
        reserved_bytes=group.reserved_space_mb * 1024 * 1024,
        max_bytes=group.max_workspace_bytes)


def _check_owner(owner: str) -> None:
    if not isinstance(owner, str) or not _SAFE_OWNER.match(owner):
        raise ValueError('unsafe owner %r for work file names' % (owner,))


def _unusable(detail: str) -> errors.WorkspaceError:
    LOG.error('Conversion work area unusable: %s', detail)
    return errors.WorkspaceError(
        'The image cannot be converted because the conversion work area of '
        'this host is not usable; please contact the cloud operator', detail)
