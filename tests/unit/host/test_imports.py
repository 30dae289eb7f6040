"""Import records and claimed orphan records: the ledger paths each fault
of the fault matrix (tests/faults) goes through.

Every "killed while ..." test forks a child that does what the import task
does up to that phase, tells the parent, and is SIGKILLed there, as the
OOM killer or an operator would kill a glance-api worker.  The parent
then checks what the next ledger access (any import on the host, or
``glance-convert recover``) finds: exactly one orphan record carrying the
task id, which recovery needs to release the image.
"""

import os
import signal
import subprocess
import time

import pytest

from glance_convert.host import ledger as ledger_
from glance_convert.host import procs
from glance_convert.host import workspace
from tests.unit.host.hosttools import GiB
from tests.unit.host.hosttools import IMAGE
from tests.unit.host.hosttools import MiB
from tests.unit.host.hosttools import OTHER
from tests.unit.host.hosttools import ctx
from tests.unit.host.hosttools import make_ws
from tests.unit.host.hosttools import wait_for
from tests.unit.host.hosttools import write_data

TASK = {'task_id': 'task-1'}


def _then_hang(phase_fn, ws, ready):
    phase_fn(ws, ready)
    time.sleep(600)  # the phase is over too soon to be killed in


def _killed_in(phase_fn, ws):
    """Run ``phase_fn(ws, ready)`` in a child; SIGKILL it once it says it
    reached its phase; return what it reported."""
    ready = ctx.Queue()
    child = ctx.Process(target=_then_hang, args=(phase_fn, ws, ready),
                        daemon=True)
    child.start()
    try:
        said = ready.get(timeout=60)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
    assert child.exitcode == -signal.SIGKILL
    return said


def _only_orphan(ws):
    orphans = ws.take_orphans()
    assert [(o['owner'], o['info'].get('task_id')) for o in orphans] == [
        (IMAGE, 'task-1')], orphans
    assert ws.imports() == []
    return orphans[0]


# -- the gap: imports that die before they reserve anything ------------------

def _waiting_for_slot(ws, ready):
    ws.begin_import(IMAGE, TASK)
    with ws.slot(IMAGE, timeout=600, on_wait=lambda: ready.put('queued')):
        ready.put('got a slot')  # a failure: the slot was busy


def test_killed_while_waiting_for_a_slot(tmp_path):
    ws = make_ws(tmp_path, max_concurrent=1)
    with ws.slot(OTHER, timeout=0):
        assert _killed_in(_waiting_for_slot, ws) == 'queued'
        orphan = _only_orphan(ws)
    assert orphan['removed'] == []
    # Its place in the slot queue went with it: the slot is free at once.
    assert ws._ledger.queue() == []
    with ws.slot(IMAGE, timeout=0):
        pass


def _waiting_for_space(ws, ready):
    ws.begin_import(IMAGE, TASK)
    with ws.reservation(IMAGE, 6 * GiB, timeout=600, info=TASK,
                        on_wait=lambda: ready.put('waiting')):
        ready.put('reserved')


def test_killed_while_waiting_for_space(tmp_path):
    ws = make_ws(tmp_path, capacity=10 * GiB)
    with ws.reservation(OTHER, 5 * GiB):
        assert _killed_in(_waiting_for_space, ws) == 'waiting'
        _only_orphan(ws)
        # Only the other import's reservation remains.
        assert ws.usage()['reserved_bytes'] == 5 * GiB


def _inspecting(ws, ready):
    ws.begin_import(IMAGE, TASK)
    ready.put('inspecting')  # qemu-img info and check run here


def test_killed_while_inspecting(tmp_path):
    ws = make_ws(tmp_path)
    assert _killed_in(_inspecting, ws) == 'inspecting'
    _only_orphan(ws)


def test_without_an_import_record_the_early_death_leaves_no_trace(tmp_path):
    # What happened before import records: nothing in the ledger names
    # the import, so recovery cannot release its image.
    ws = make_ws(tmp_path, max_concurrent=1)

    def waiting(ws, ready):
        with ws.slot(IMAGE, timeout=600, on_wait=lambda: ready.put('q')):
            pass

    with ws.slot(OTHER, timeout=0):
        _killed_in(waiting, ws)
        assert ws.take_orphans() == []


# -- later phases: one record per import, not one per ledger entry ----------

def _converting(ws, ready):
    ws.begin_import(IMAGE, TASK)
    with ws.reservation(IMAGE, GiB, info=TASK) as res:
        out = res.path('part')
        write_data(out, 4096)
        child = subprocess.Popen(['sleep', '600'])
        res.add_process(child.pid)
        ready.put((out, child.pid, procs.process_start_time(child.pid)))
        child.wait()


def test_killed_while_converting(tmp_path):
    ws = make_ws(tmp_path)
    out, pid, start = _killed_in(_converting, ws)
    orphan = _only_orphan(ws)
    assert ws.usage()['reservations'] == 0
    # The work file was removed and named once; qemu-img was killed.
    assert orphan['removed'] == [out]
    assert not os.path.exists(out)
    wait_for(lambda: not procs.alive(pid, start), 'the child to be killed')


def _uploading(ws, ready):
    record = ws.begin_import(IMAGE, TASK)
    with ws.reservation(IMAGE, GiB, info=TASK) as res:
        out = res.path('qcow2')
        write_data(out, 4096)
        res.keep(out)
    record.end(watch=out)  # handed to Glance's upload
    ready.put(out)


def test_killed_while_glance_uploads_the_output(tmp_path):
    ws = make_ws(tmp_path)
    out = _killed_in(_uploading, ws)
    assert _only_orphan(ws)['removed'] == [out]
    assert not os.path.exists(out)


def test_killed_uploading_a_file_that_was_not_converted(tmp_path):
    # Passed through: the watched file is Glance's staged data, which the
    # reaper never removes (recovery deletes it through the image id).
    ws = make_ws(tmp_path)
    staged = os.path.join(ws.work_dir, IMAGE)
    write_data(staged, 10)

    def uploading(ws, ready):
        ws.begin_import(IMAGE, TASK).end(watch=staged)
        ready.put('uploading')

    _killed_in(uploading, ws)
    assert _only_orphan(ws)['removed'] == []
    assert os.path.exists(staged)


def test_record_of_a_finished_upload_goes_with_its_file(tmp_path):
    ws = make_ws(tmp_path)
    out = ws.work_path(IMAGE, 'qcow2')
    write_data(out, 10)
    record = ws.begin_import(IMAGE, TASK)
    [entry] = ws.imports()
    assert entry['active'] and entry['info'] == TASK
    record.end(watch=out)
    [entry] = ws.imports()
    assert not entry['active'] and entry['watch'] == [out]
    os.unlink(out)  # Glance's DeleteFromFS after the upload
    assert ws.imports() == []
    assert ws.take_orphans() == []


def test_ending_without_or_with_a_vanished_file_drops_the_record(tmp_path):
    ws = make_ws(tmp_path)
    ws.begin_import(IMAGE, TASK).end()
    ws.begin_import(OTHER, TASK).end(
        watch=ws.work_path(OTHER, 'qcow2'))  # never created
    assert ws.imports() == []
    # Ending twice (execute then revert) is harmless.
    record = ws.begin_import(IMAGE, TASK)
    record.end()
    record.end()
    assert ws.imports() == [] and ws.take_orphans() == []


def test_abandoning_after_the_watched_file_went_still_leaves_a_record(
        tmp_path):
    # A store upload failed; the revert removed the output (so the record
    # watching it went) and then could not reset the image.
    ws = make_ws(tmp_path)
    out = ws.work_path(IMAGE, 'qcow2')
    write_data(out, 10)
    record = ws.begin_import(IMAGE, TASK)
    record.end(watch=out)
    os.unlink(out)
    assert ws.imports() == []
    record.abandon('cannot reset the image')
    [orphan] = ws.take_orphans()
    assert (orphan['owner'], orphan['info']['task_id']) == (IMAGE, 'task-1')


def test_import_records_are_not_reservations(tmp_path):
    ws = make_ws(tmp_path, capacity=2 * GiB, max_bytes=GiB)
    ws.begin_import(IMAGE, TASK)
    assert ws.usage() == {'reservations': 0, 'reserved_bytes': 0,
                          'paths': []}
    with ws.reservation(OTHER, GiB):  # the whole cap is still there
        pass


def test_abandoned_import_is_left_to_recovery_at_once(tmp_path):
    # The task's revert could not put the image back (database down).
    ws = make_ws(tmp_path)
    record = ws.begin_import(IMAGE, TASK)
    record.abandon('cannot reset the image: database unavailable')
    [orphan] = ws.take_orphans()
    assert orphan['owner'] == IMAGE
    assert orphan['info'] == dict(
        TASK, reason='cannot reset the image: database unavailable')
    assert orphan['pid'] == os.getpid()  # alive, yet an orphan
    assert ws.imports() == []


def test_bad_owner_is_refused(tmp_path):
    ws = make_ws(tmp_path)
    with pytest.raises(ValueError):
        ws.begin_import('../etc', TASK)


# -- recovery claims its records -------------------------------------------

def _dead_import(ws, image=IMAGE, task='task-1'):
    def inspecting(ws, ready):
        ws.begin_import(image, {'task_id': task})
        ready.put('inspecting')
    _killed_in(inspecting, ws)


def _claiming(ws, ready):
    ready.put(ws.claim_orphans())  # then killed before it settles


def test_recovery_killed_after_it_claimed_loses_nothing(tmp_path):
    ws = make_ws(tmp_path)
    _dead_import(ws)
    [claimed] = _killed_in(_claiming, ws)
    assert claimed['owner'] == IMAGE
    # The claimer is dead: the next recovery gets the record again.
    [again] = ws.claim_orphans()
    assert again['owner'] == IMAGE
    assert ws.settle_orphans([again], []) == []
    assert ws.claim_orphans() == []


def test_take_orphans_loses_what_a_killed_recovery_took(tmp_path):
    # Why claims: with take/return, a recovery killed between the two
    # forgets the images it had not released yet.
    ws = make_ws(tmp_path)
    _dead_import(ws)

    def taking(ws, ready):
        ready.put(ws.take_orphans())

    assert len(_killed_in(taking, ws)) == 1
    assert ws.claim_orphans() == []


def test_live_claims_are_not_handed_out_twice(tmp_path):
    ws = make_ws(tmp_path)
    _dead_import(ws, IMAGE, 'task-1')
    [mine] = ws.claim_orphans()
    # Another recovery at the same moment (another glance-api worker).
    ready = ctx.Queue()

    def other(ws, ready):
        ready.put((ws.claim_orphans(), ws.take_orphans()))

    child = ctx.Process(target=other, args=(ws, ready))
    child.start()
    assert ready.get(timeout=60) == ([], [])
    child.join(30)
    _dead_import(ws, OTHER, 'task-2')
    [theirs] = ws.claim_orphans()
    assert theirs['owner'] == OTHER
    ws.settle_orphans([mine, theirs], [])
    assert ws.peek_orphans() == []


def test_concurrent_claims_split_the_records(tmp_path):
    ws = make_ws(tmp_path)
    for i in range(6):
        _dead_import(ws, '%s%d' % (IMAGE[:-1], i), 'task-%d' % i)
    ready = ctx.Queue()

    def claim(ws, ready):
        got = ws.claim_orphans()
        ws.settle_orphans(got, [])
        ready.put([o['owner'] for o in got])

    children = [ctx.Process(target=claim, args=(ws, ready))
                for _ in range(3)]
    for c in children:
        c.start()
    got = [ready.get(timeout=60) for _ in children]
    for c in children:
        c.join(30)
    owners = [o for g in got for o in g]
    assert sorted(owners) == sorted('%s%d' % (IMAGE[:-1], i)
                                    for i in range(6))
    assert ws.peek_orphans() == []


def test_failed_releases_are_retried_then_given_up(tmp_path):
    ws = make_ws(tmp_path)
    _dead_import(ws)
    for attempt in range(1, workspace.MAX_RECOVERY_ATTEMPTS):
        [record] = ws.claim_orphans(due_only=False)
        assert int(record.get('attempts') or 0) == attempt - 1
        assert ws.settle_orphans([], [record]) == []
        # Not offered again at once: the database may be down a while.
        assert ws.claim_orphans() == []
        [waiting] = ws.peek_orphans()
        assert not ledger_.is_due(waiting)
        assert ledger_.is_due(waiting, now=waiting['retry_after'])
    [record] = ws.claim_orphans(due_only=False)
    [given_up] = ws.settle_orphans([], [record])
    assert given_up['attempts'] == workspace.MAX_RECOVERY_ATTEMPTS
    assert ws.claim_orphans(due_only=False) == []


def test_retry_delays_outlast_a_database_restart():
    delays = [ledger_.retry_delay(n)
              for n in range(1, workspace.MAX_RECOVERY_ATTEMPTS)]
    assert delays == sorted(delays)
    assert sum(delays) >= 120


def test_peek_shows_claimed_records_without_the_claim(tmp_path):
    ws = make_ws(tmp_path)
    _dead_import(ws)
    ws.claim_orphans()
    [seen] = ws.peek_orphans()
    assert seen['owner'] == IMAGE and 'claim' not in seen


def test_a_ledger_without_kinds_or_claims_still_reads(tmp_path):
    # The format before import records: entries have no 'kind' or
    # 'watch', orphans no 'claim'.
    ws = make_ws(tmp_path)
    out = ws.work_path(IMAGE, 'out')
    write_data(out, 10)
    pid, start = procs.current()
    ledger = ws._ledger
    with ledger.locked() as data:
        data['entries']['old'] = {'owner': IMAGE, 'pid': pid,
                                  'start': start, 'bytes': MiB,
                                  'paths': [out]}
        data['orphans'].append({'owner': OTHER, 'info': {'task_id': 't'},
                                'pid': 1, 'removed': []})
    assert ws.imports() == []
    assert ws.usage()['reserved_bytes'] == MiB
    [record] = ws.claim_orphans()
    assert record['owner'] == OTHER
    assert not ledger_.is_import(data['entries']['old'])


def test_one_orphan_per_import_keeps_what_either_record_knew():
    # The reservation and the import record of one import die together;
    # whichever the reaper meets first, the import record's formats (which
    # recovery restores) must survive the merge.
    for order in ((0, 1), (1, 0)):
        records = [{'owner': IMAGE, 'info': {'task_id': 'task-1'},
                    'removed': ['/w/a']},
                   {'owner': IMAGE, 'info': {'task_id': 'task-1',
                                             'formats': ['qcow2', 'bare']},
                    'removed': []}]
        ledger = {'orphans': []}
        for i in order:
            ledger_._add_orphan(ledger, records[i])
        [orphan] = ledger['orphans']
        assert orphan['info']['formats'] == ['qcow2', 'bare']
        assert orphan['removed'] == ['/w/a']
