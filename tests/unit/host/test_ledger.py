"""Unit tests of the ledger: its file format, reaping, orphan records."""

import os
import subprocess
import sys

import pytest

from glance_convert import errors
from glance_convert.host import procs
from glance_convert.host import workspace
from tests.unit.host.hosttools import GiB
from tests.unit.host.hosttools import IMAGE
from tests.unit.host.hosttools import MiB
from tests.unit.host.hosttools import OTHER
from tests.unit.host.hosttools import fake_entry
from tests.unit.host.hosttools import make_ws
from tests.unit.host.hosttools import write_data
from tests.unit.host.hosttools import write_ledger


def dead_pid():
    """A pid whose process has exited (and been waited for)."""
    child = subprocess.Popen(['true'])
    child.wait()
    return child.pid


def test_reused_pid_is_not_mistaken_for_the_holder(tmp_path):
    ws = make_ws(tmp_path)
    out = ws.work_path(IMAGE, 'out')
    write_data(out, 10)
    me = os.getpid()
    real_start = procs.process_start_time(me)
    assert real_start is not None
    # Same pid, the start time a previous process with that pid had.
    fake_entry(ws, me, real_start - 1, [out])
    assert ws.reap_orphans() == [out]
    assert not os.path.exists(out)
    # The genuine holder (same pid and start time) is left alone.
    write_data(out, 10)
    fake_entry(ws, me, real_start, [out])
    assert ws.reap_orphans() == []
    assert os.path.exists(out)
    assert ws.usage()['reserved_bytes'] == GiB


def test_records_of_another_pid_namespace_are_never_taken_for_dead(
        tmp_path):
    """A glance-api in a container and a recovery outside it see other
    pids: its live import must not be reaped, nor its claim voided."""
    ws = make_ws(tmp_path)
    out = ws.work_path(IMAGE, 'out')
    write_data(out, 10)
    gone = dead_pid()
    ledger = {
        'entries': {'e1': {'owner': IMAGE, 'pid': gone, 'start': 1,
                           'bytes': GiB, 'paths': [out], 'processes': [],
                           'info': {'task_id': 't1'},
                           'pidns': 'pid:[1]'}},
        'queue': [{'id': 'q1', 'owner': OTHER, 'pid': gone, 'start': 1,
                   'since': 0, 'pidns': 'pid:[1]'}],
        'orphans': [{'owner': OTHER, 'info': {'task_id': 't2'},
                     'pid': gone, 'removed': [], 'found_at': 0,
                     'claim': [gone, 1, 'pid:[1]']}]}
    write_ledger(ws, ledger)
    assert [o['owner'] for o in ws.peek_orphans()] == [OTHER]
    assert ws.claim_orphans() == []
    assert ws.reap_orphans() == []
    assert os.path.exists(out)
    assert ws.usage()['reservations'] == 1
    # The same records made in this namespace are those of dead processes.
    ns = procs.pid_namespace()
    assert ns is not None and ns != 'pid:[1]'
    ledger['entries']['e1']['pidns'] = ns
    ledger['orphans'][0]['claim'][2] = ns
    write_ledger(ws, ledger)
    assert ws.reap_orphans() == [out]
    assert sorted(o['owner'] for o in ws.claim_orphans()) == sorted(
        [IMAGE, OTHER])


def test_reaper_never_removes_foreign_files(tmp_path):
    ws = make_ws(tmp_path)
    victim = tmp_path / 'precious'
    victim.write_text('keep me')
    staged = os.path.join(ws.work_dir, IMAGE)  # Glance's staged data
    write_data(staged, 10)
    fake_entry(ws, 2 ** 22 + 1, 1, [str(victim), staged])
    assert ws.reap_orphans() == []
    assert victim.read_text() == 'keep me'
    assert os.path.exists(staged)
    assert ws.usage()['reservations'] == 0


def test_corrupt_ledger_is_set_aside(tmp_path):
    ws = make_ws(tmp_path)
    os.makedirs(ws.lock_dir, exist_ok=True)
    with open(ws.ledger_path, 'w') as f:
        f.write('{not json')
    with ws.reservation(IMAGE, MiB):
        assert ws.usage()['reserved_bytes'] == MiB
    with open(ws.ledger_path + '.bad') as f:
        assert f.read() == '{not json'


def test_a_ledger_of_the_oldest_format_is_read(tmp_path):
    # No queue, no orphans, no 'active', 'processes' or 'info': what the
    # first releases wrote.  Its live entry counts, its dead one is reaped.
    ws = make_ws(tmp_path)
    mine = ws.work_path(IMAGE, 'out')
    theirs = ws.work_path(OTHER, 'out')
    write_data(mine, 10)
    write_data(theirs, 10)
    pid, start = procs.current()
    write_ledger(ws, {'entries': {
        'live': {'owner': IMAGE, 'pid': pid, 'start': start, 'bytes': MiB,
                 'paths': [mine]},
        'dead': {'owner': OTHER, 'pid': dead_pid(), 'start': 1,
                 'bytes': GiB, 'paths': [theirs]}}})
    assert ws.usage() == {'reservations': 1, 'reserved_bytes': MiB,
                          'paths': [mine]}
    assert not os.path.exists(theirs) and os.path.exists(mine)
    [orphan] = ws.take_orphans()
    assert (orphan['owner'], orphan['removed']) == (OTHER, [theirs])


def _ledger_bytes(ws):
    with open(ws.ledger_path, 'rb') as f:
        return f.read()


def test_peek_orphans_reports_what_take_would_and_changes_nothing(tmp_path):
    ws = make_ws(tmp_path)
    work = ws.work_path(IMAGE, 'out')
    write_data(work, 10)
    staged = os.path.join(ws.work_dir, IMAGE)  # Glance's, never removed
    write_data(staged, 10)
    pid = dead_pid()
    write_ledger(ws, {
        'entries': {'e1': {'owner': IMAGE, 'pid': pid, 'start': 1,
                           'bytes': GiB, 'paths': [work, staged],
                           'processes': [], 'info': {'task_id': 't1'},
                           'active': True}},
        'orphans': [{'owner': OTHER, 'info': {'task_id': 't0'}, 'pid': 7,
                     'removed': [], 'found_at': 0}]})
    before = _ledger_bytes(ws)
    files = sorted(os.listdir(ws.lock_dir)), sorted(os.listdir(ws.work_dir))

    peeked = ws.peek_orphans()

    assert [(o['owner'], o['info'], o['pid'], o['removed'])
            for o in peeked] == [(OTHER, {'task_id': 't0'}, 7, []),
                                 (IMAGE, {'task_id': 't1'}, pid, [work])]
    assert _ledger_bytes(ws) == before
    assert (sorted(os.listdir(ws.lock_dir)),
            sorted(os.listdir(ws.work_dir))) == files
    # The real take agrees and removes what peek announced.
    taken = ws.take_orphans()
    assert [(o['owner'], o['removed']) for o in taken] == [
        (o['owner'], o['removed']) for o in peeked]
    assert not os.path.exists(work) and os.path.exists(staged)
    assert ws.peek_orphans() == []


def test_peek_orphans_leaves_live_holders_alone(tmp_path):
    ws = make_ws(tmp_path)
    with ws.reservation(IMAGE, MiB, info={'task_id': 't1'}) as res:
        write_data(res.path('out'), 10)
        assert ws.peek_orphans() == []


def test_peek_orphans_without_a_ledger_creates_nothing(tmp_path):
    ws = make_ws(tmp_path)
    assert ws.peek_orphans() == []
    assert not os.path.exists(ws.lock_dir)


@pytest.mark.parametrize('content', ['{not json', '[]', '{"orphans": []}'])
def test_peek_orphans_of_an_unreadable_ledger_raises_and_keeps_it(
        tmp_path, content):
    ws = make_ws(tmp_path)
    os.makedirs(ws.lock_dir)
    with open(ws.ledger_path, 'w') as f:
        f.write(content)
    with pytest.raises(errors.WorkspaceError) as exc:
        ws.peek_orphans()
    assert exc.value.detail.startswith(
        'cannot read the conversion ledger %s: ' % ws.ledger_path)
    assert _ledger_bytes(ws) == content.encode()
    assert os.listdir(ws.lock_dir) == [os.path.basename(ws.ledger_path)]


def test_returned_orphans_count_attempts_and_are_given_up(tmp_path):
    ws = make_ws(tmp_path)
    record = {'owner': IMAGE, 'info': {'task_id': 't1'}, 'pid': 7,
              'removed': []}
    for attempt in range(1, 5):
        assert ws.return_orphans([record, record]) == []  # kept once
        [record] = ws.take_orphans()
        assert record['attempts'] == attempt
    [given_up] = ws.return_orphans([record])
    assert given_up['attempts'] == 5 == workspace.MAX_RECOVERY_ATTEMPTS
    assert ws.take_orphans() == []


if __name__ == '__main__':  # pragma: no cover
    sys.exit(pytest.main([__file__, '-v']))
