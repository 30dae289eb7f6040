"""The ledger: who uses a work area, in one small JSON file per host.

Read and rewritten under an exclusive ``flock`` (see
:mod:`~glance_convert.host.slots` for why not oslo.concurrency), through a
temporary file renamed over it, so nobody ever reads half a ledger.  It
records each reservation's bytes, work files and qemu-img children, the
slot waiters, the import records, and the orphans a dead glance-api left
for recovery; an entry whose holder died is dropped, its files removed
and its qemu-img killed, whenever the ledger is read under its lock.  Its
fields are described in the contributor documentation ("The host's
ledger").
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


IMPORT = 'import'


def new_entry(owner: str, nbytes: int, paths: list[str],
              info: dict | None, kind: str | None = None) -> dict:
    """The record of a reservation (or import) that this process holds."""
    pid, start = procs.current()
    entry = {'owner': owner, 'pid': pid, 'start': start, 'bytes': nbytes,
             'paths': list(paths), 'processes': [], 'info': info or {},
             'active': True, 'since': time.time(),
             'pidns': procs.pid_namespace()}
    if kind:
        entry['kind'] = kind
    return entry


def is_import(entry: dict) -> bool:
    """Whether the entry is an import record rather than a reservation."""
    return entry.get('kind') == IMPORT


def _leftovers(entry: dict) -> bool:
    """Whether any file that keeps a finished entry still exists."""
    return any(os.path.lexists(p)
               for p in entry['paths'] + entry.get('watch', []))


def is_active(entry: dict) -> bool:
    """Whether the entry's conversion still runs (it was not released)."""
    return entry.get('active', True)


def _orphan_record(entry: dict, removed: list[str]) -> dict:
    return {'owner': entry.get('owner'), 'info': entry.get('info') or {},
            'pid': entry.get('pid'), 'removed': removed,
            'found_at': time.time()}


def _orphan_key(record: dict) -> tuple:
    return record.get('owner'), (record.get('info') or {}).get('task_id')


def _add_orphan(ledger: dict, record: dict) -> None:
    """Record an orphan; one record per import (its reservation and its
    import record die together), whose ``removed`` lists every file and
    whose ``info`` has what either knew (the import record's formats)."""
    key = _orphan_key(record)
    if key[1] is not None:
        for known in ledger['orphans']:
            if _orphan_key(known) == key:
                known['removed'] = known.get('removed', []) + [
                    p for p in record['removed']
                    if p not in known.get('removed', [])]
                known['info'] = dict(record.get('info') or {},
                                     **(known.get('info') or {}))
                return
    ledger['orphans'].append(record)


def retry_delay(attempts: int) -> float:
    """Seconds before a record whose release failed ``attempts`` times is
    offered again: a database that is down for a minute or two (a
    restart, a fail-over) does not use up every attempt at once."""
    return min(60.0, 5.0 * 2 ** attempts)


def is_due(record: dict, now: float | None = None) -> bool:
    """Whether a record waits for no retry delay."""
    return (record.get('retry_after') or 0) <= (now or time.time())


def _gone(record: dict) -> bool:
    """Whether the process that made an entry or waiter record is dead."""
    return not (procs.alive(record.get('pid'), record.get('start'))
                or procs.alien(record.get('pidns')))


def _me() -> list:
    """This process, as a claim names it."""
    return list(procs.current()) + [procs.pid_namespace()]


def _claimed(record: dict) -> bool:
    """Whether a live recovery is releasing the record right now."""
    claim = record.get('claim')
    return bool(claim) and (procs.alive(claim[0], claim[1]) or (
        len(claim) > 2 and procs.alien(claim[2])))


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
        with layout_.flocked(self.layout.ledger_lock_path, fcntl.LOCK_EX):
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

        Also drops finished entries (no bytes, every file gone), and frees
        orphan records claimed by a recovery that died, for the next one.
        """
        removed = []
        ledger['queue'] = [w for w in ledger['queue'] if not _gone(w)]
        entries = ledger['entries']
        for entry_id, e in list(entries.items()):
            if not _gone(e):
                if not is_active(e) and not _leftovers(e):
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
            _add_orphan(ledger, _orphan_record(e, gone))
        for record in ledger['orphans']:
            if record.get('claim') and not _claimed(record):
                LOG.warning('Recovery of image %s by process %s ended '
                            'before it finished; offering it again',
                            record.get('owner'), record['claim'][0])
                del record['claim']
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
            if not _leftovers(e):
                del ledger['entries'][entry_id]

    # ------------------------------------------------------ import records

    def begin_import(self, owner: str, info: dict) -> str:
        """Add an import record for this process; return its id."""
        entry_id = uuid.uuid4().hex
        with self.locked() as ledger:
            ledger['entries'][entry_id] = new_entry(owner, 0, [], info,
                                                    kind=IMPORT)
        return entry_id

    def end_import(self, entry_id: str, watch: str | None = None) -> None:
        """The import's task is done: forget the record, or, with
        ``watch``, keep it until that file is gone."""
        with self.locked() as ledger:
            e = ledger['entries'].get(entry_id)
            if e is None:
                return
            e['active'] = False
            e['watch'] = [watch] if watch else []
            if not _leftovers(e):
                del ledger['entries'][entry_id]

    def abandon_import(self, entry_id: str, reason: str, owner: str,
                       info: dict) -> None:
        """Turn an import record into an orphan record now.

        For an import whose own clean-up could not put its image back (the
        database was down): recovery retries what the task could not.  The
        record may be gone already (it watched a file the clean-up
        removed): ``owner`` and ``info`` make a new one.
        """
        with self.locked() as ledger:
            e = ledger['entries'].pop(entry_id, None)
            if e is None:
                e = new_entry(owner, 0, [], info, kind=IMPORT)
            record = _orphan_record(e, [])
            record['info'] = dict(record['info'], reason=reason)
            _add_orphan(ledger, record)

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
                                    'start': start, 'since': time.time(),
                                    'pidns': procs.pid_namespace()})
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
        """Remove and return the records no live recovery has claimed."""
        with self.locked() as ledger:
            orphans = [o for o in ledger['orphans'] if not _claimed(o)]
            ledger['orphans'] = [o for o in ledger['orphans']
                                 if _claimed(o)]
        for o in orphans:
            o.pop('claim', None)
        return orphans

    def claim_orphans(self, due_only: bool = True) -> list[dict]:
        """Claim the records no live recovery has claimed; return copies.

        They stay in the ledger until :meth:`settle_orphans`: a recovery
        that dies half-way loses nothing, since a claim of a dead process
        is void at the next access and the records are offered again.
        ``due_only``: leave the records whose retry delay runs.
        """
        me = _me()
        now = time.time()
        with self.locked() as ledger:
            claimed = []
            for record in ledger['orphans']:
                if not _claimed(record) and (is_due(record, now)
                                             or not due_only):
                    record['claim'] = me
                    claimed.append(dict(record))
        for record in claimed:
            del record['claim']
        return claimed

    def settle_orphans(self, done: list[dict], retry: list[dict],
                       max_attempts: int) -> list[dict]:
        """End this process's claims: forget ``done``, count one more
        attempt on ``retry`` and offer it again.

        Returns the ``retry`` records that reached ``max_attempts``, which
        are dropped.
        """
        me = _me()
        forget = {_orphan_key(r) for r in done}
        again = {_orphan_key(r) for r in retry}
        given_up = []
        with self.locked() as ledger:
            kept = []
            for record in ledger['orphans']:
                key = _orphan_key(record)
                if record.get('claim') != me or key not in forget | again:
                    kept.append(record)
                    continue
                del record['claim']
                if key in forget:
                    continue
                record['attempts'] = int(record.get('attempts') or 0) + 1
                record['retry_after'] = time.time() + retry_delay(
                    record['attempts'])
                if record['attempts'] >= max_attempts:
                    given_up.append(record)
                else:
                    kept.append(record)
            ledger['orphans'] = kept
        return given_up

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
        view = {'orphans': [dict(o) for o in ledger['orphans']]}
        for o in view['orphans']:
            o.pop('claim', None)
        for e in ledger['entries'].values():
            if _gone(e):
                _add_orphan(view, _orphan_record(e, [
                    p for p in e.get('paths', [])
                    if self.layout.is_work_file(p) and os.path.lexists(p)]))
        return view['orphans']
