"""The ledger: who uses a work area, in one small JSON file per host.

``glance-convert-<key>.ledger`` is read and rewritten under an exclusive
``flock`` on the lock file beside it (a flock and not an oslo.concurrency
lock for the reasons given in :mod:`glance_convert.host.slots`).  A
rewrite goes to a temporary file renamed over the ledger, so a crash never
leaves a half-written ledger and a reader without the lock always sees a
whole one.  It holds::

    {"entries": {"<id>": {            # one per reservation
         "owner": image id, "pid": holder, "start": its start time,
         "bytes": reserved, "paths": [work files it owns],
         "processes": [[pid, start], ...],   # its qemu-img children
         "info": {"task_id": ...}, "active": false once released,
         "since": epoch}},
     "queue": [{"id", "owner", "pid", "start", "since"}],  # slot waiters
     "orphans": [{"owner", "info", "pid", "removed": [paths],
                  "found_at", "attempts"}]}   # dead holders' conversions

Older ledgers may lack ``queue``, ``orphans``, ``active``, ``processes``,
``info`` and ``attempts``; the defaults are empty, active and 0.

An entry whose holder died (its pid is gone, or was reused by a process
that started at another time) is dropped whenever the ledger is read under
its lock: its work files are removed, any qemu-img it started is killed,
and an orphan record remains until recovery takes it.
"""

import contextlib
import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator

from glance_convert import errors
from glance_convert.host import layout as layout_
from glance_convert.host import procs

LOG = logging.getLogger(__name__)

MAX_ORPHAN_RECORDS = 100


def new_entry(owner: str, nbytes: int, paths: list[str],
              info: dict | None) -> dict:
    """The record of a reservation that this process holds."""
    pid, start = procs.current()
    return {'owner': owner, 'pid': pid, 'start': start, 'bytes': nbytes,
            'paths': list(paths), 'processes': [], 'info': info or {},
            'active': True, 'since': time.time()}


def is_active(entry: dict) -> bool:
    """Whether the entry's conversion still runs (it was not released)."""
    return entry.get('active', True)


def _orphan_record(entry: dict, removed: list[str]) -> dict:
    return {'owner': entry.get('owner'), 'info': entry.get('info') or {},
            'pid': entry.get('pid'), 'removed': removed,
            'found_at': time.time()}


def _orphan_key(record: dict) -> tuple:
    return record.get('owner'), (record.get('info') or {}).get('task_id')


def _parse(text: str) -> dict:
    """The ledger in ``text`` with the defaults of older formats filled in.

    Raises ValueError when it is not a ledger.
    """
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get('entries'),
                                                    dict):
        raise ValueError('no entries')
    data.setdefault('orphans', [])
    data.setdefault('queue', [])
    return data


class Ledger:
    """The ledger of the work area laid out by ``layout``."""

    def __init__(self, layout: layout_.Layout):
        self.layout = layout
        self.path = layout.ledger_path

    # ------------------------------------------------------- file and lock

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict]:
        """Read, reap and (on normal exit) rewrite the ledger, under its lock.

        Yields the ledger (see the module docstring) plus ``'_removed'``:
        the work files the reaping removed.  Changes the caller makes are
        saved atomically.
        """
        self.layout.prepare()
        lock_path = self.layout.ledger_lock_path
        try:
            fd = layout_.open_lock_file(lock_path)
        except OSError as e:
            raise layout_.unusable('cannot open %s: %s' % (lock_path, e))
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
            with open(self.path, encoding='utf-8') as f:
                return _parse(f.read())
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            # Never silently forget work files: keep the bad ledger aside.
            LOG.error('Conversion ledger %s is unreadable (%s); starting a '
                      'new one, old copy kept as %s.bad', self.path, e,
                      self.path)
            with contextlib.suppress(OSError):
                os.replace(self.path, self.path + '.bad')
        return {'entries': {}, 'orphans': [], 'queue': []}

    def _write(self, ledger: dict) -> None:
        tmp = '%s.%d.%s.tmp' % (self.path, os.getpid(), uuid.uuid4().hex[:8])
        try:
            with open(tmp, 'w', encoding='utf-8') as f:
                json.dump(ledger, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise layout_.unusable('cannot write %s: %s' % (self.path, e))

    # ------------------------------------------------------------- reaping

    def _reap_dead(self, ledger: dict) -> list[str]:
        """Drop entries of dead holders, kill their children, remove files.

        Also drops finished entries (no bytes, every file gone).
        """
        removed = []
        ledger['queue'] = [w for w in ledger['queue']
                           if procs.alive(w['pid'], w['start'])]
        entries = ledger['entries']
        for entry_id, e in list(entries.items()):
            if procs.alive(e['pid'], e.get('start')):
                if not is_active(e) and not any(
                        os.path.lexists(p) for p in e['paths']):
                    del entries[entry_id]  # kept files were consumed
                continue
            for pid, start in e.get('processes', []):
                procs.kill_left_child(pid, start, e['owner'])
            gone = []
            for path in e['paths']:
                if not self.layout.is_work_file(path):
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
            ledger['orphans'].append(_orphan_record(e, gone))
        del ledger['orphans'][:-MAX_ORPHAN_RECORDS]
        return removed

    def reap(self) -> list[str]:
        """Reap dead holders now; return the work files removed."""
        with self.locked() as ledger:
            return list(ledger['_removed'])

    # ------------------------------------------------------------- entries

    def update_entry(self, entry_id: str, add_path: str | None = None,
                     remove_path: str | None = None,
                     add_process: list | None = None) -> None:
        with self.locked() as ledger:
            e = ledger['entries'].get(entry_id)
            if e is None:
                raise layout_.unusable('reservation %s vanished from %s'
                                       % (entry_id, self.path))
            if add_path and add_path not in e['paths']:
                e['paths'].append(add_path)
            if remove_path and remove_path in e['paths']:
                e['paths'].remove(remove_path)
            if add_process:
                e.setdefault('processes', []).append(add_process)

    def finish_entry(self, entry_id: str,
                     only_paths: list[str] | None = None) -> None:
        """Release the entry's bytes and children; keep its existing files.

        ``only_paths``: forget every other path first (they were removed).
        The entry goes once none of its files exists.
        """
        with self.locked() as ledger:
            e = ledger['entries'].get(entry_id)
            if e is None:
                return
            if only_paths is not None:
                e['paths'] = [p for p in e['paths'] if p in only_paths]
            e['processes'] = []
            e['bytes'] = 0
            e['active'] = False
            if not any(os.path.lexists(p) for p in e['paths']):
                del ledger['entries'][entry_id]

    def entries(self) -> list[dict]:
        with self.locked() as ledger:
            return list(ledger['entries'].values())

    # --------------------------------------------------------------- queue

    def join_queue(self, owner: str) -> str:
        """Queue this process as a slot waiter; return its ticket."""
        ticket = uuid.uuid4().hex
        pid, start = procs.current()
        with self.locked() as ledger:
            ledger['queue'].append({'id': ticket, 'owner': owner, 'pid': pid,
                                    'start': start, 'since': time.time()})
        return ticket

    def leave_queue(self, ticket: str) -> None:
        with self.locked() as ledger:
            ledger['queue'] = [w for w in ledger['queue']
                               if w['id'] != ticket]

    def queue(self) -> list[str]:
        """The tickets of the live waiters, oldest first."""
        with self.locked() as ledger:
            return [w['id'] for w in ledger['queue']]

    # ------------------------------------------------------------- orphans

    def take_orphans(self) -> list[dict]:
        with self.locked() as ledger:
            orphans = ledger['orphans']
            ledger['orphans'] = []
        return orphans

    def return_orphans(self, records: list[dict],
                       max_attempts: int) -> list[dict]:
        """Put back ``records`` with one more attempt counted, unless known.

        Returns those that reached ``max_attempts``, which are dropped.
        """
        given_up = []
        if not records:
            return given_up
        with self.locked() as ledger:
            known = {_orphan_key(o) for o in ledger['orphans']}
            for record in records:
                record = dict(record,
                              attempts=int(record.get('attempts') or 0) + 1)
                if record['attempts'] >= max_attempts:
                    given_up.append(record)
                elif _orphan_key(record) not in known:
                    ledger['orphans'].append(record)
                    known.add(_orphan_key(record))
        return given_up

    def peek_orphans(self) -> list[dict]:
        """The orphan records a take would return now, changing nothing.

        The recorded orphans plus a record for each entry whose holder is
        dead (the next locked access reaps it), whose ``removed`` lists
        the work files that reaping would remove.  Needs no lock (writes
        are atomic renames) and creates no file, so it suits a look from
        another user.  Raises
        :class:`~glance_convert.errors.WorkspaceError` when the ledger is
        unreadable.
        """
        try:
            with open(self.path, encoding='utf-8') as f:
                ledger = _parse(f.read())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            raise errors.WorkspaceError(
                'The conversion ledger is unreadable',
                'cannot read the conversion ledger %s: %s' % (self.path, e))
        found = list(ledger['orphans'])
        for e in ledger['entries'].values():
            if not procs.alive(e.get('pid'), e.get('start')):
                found.append(_orphan_record(e, [
                    p for p in e.get('paths', [])
                    if self.layout.is_work_file(p) and os.path.lexists(p)]))
        return found
