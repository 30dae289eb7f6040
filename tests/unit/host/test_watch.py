"""The look-out that recovers after a worker died, with no restart."""

import os

from glance_convert.host import watch
from tests.unit.host.hosttools import ctx
from tests.unit.host.hosttools import IMAGE
from tests.unit.host.hosttools import make_ws
from tests.unit.host.hosttools import wait_for


def _dead_import(ws):
    child = ctx.Process(target=ws.begin_import,
                        args=(IMAGE, {'task_id': 't1'}))
    child.start()
    child.join(30)  # exits with its import record still in the ledger


def test_check_recovers_only_when_a_holder_died(tmp_path):
    ws = make_ws(tmp_path)
    calls = []
    look = watch.OrphanWatch(lambda: ws, calls.append)
    ws.begin_import(IMAGE, {'task_id': 'mine'})  # alive: nothing to do
    assert look.check() is False
    _dead_import(ws)
    assert look.check() is True
    assert calls == [ws]


def test_records_waiting_for_a_retry_do_not_trigger_it(tmp_path):
    ws = make_ws(tmp_path)
    _dead_import(ws)
    records = ws.claim_orphans()
    ws.settle_orphans([], records)  # the database was down
    look = watch.OrphanWatch(lambda: ws, lambda w: None)
    assert look.check() is False


def test_the_thread_recovers_by_itself(tmp_path):
    ws = make_ws(tmp_path)
    released = []

    def recover(w):
        records = w.claim_orphans()
        released.extend(r['owner'] for r in records)
        w.settle_orphans(records, [])

    look = watch.OrphanWatch(lambda: ws, recover, interval=0.05).start()
    try:
        _dead_import(ws)
        wait_for(lambda: released, 'the watch to recover')
    finally:
        look.stop()
    assert released == [IMAGE]
    assert ws.peek_orphans() == []


def test_one_watch_per_process_and_a_new_one_after_fork(tmp_path):
    ws = make_ws(tmp_path)
    first = watch.ensure_started(lambda: ws, lambda w: None, interval=60)
    assert watch.ensure_started(lambda: ws, lambda w: None) is first
    out = ctx.Queue()

    def child():
        mine = watch.ensure_started(lambda: ws, lambda w: None, interval=60)
        out.put((mine.pid, mine is first))

    p = ctx.Process(target=child)
    p.start()
    pid, same = out.get(timeout=30)
    p.join(30)
    assert pid == p.pid and pid != os.getpid() and not same
