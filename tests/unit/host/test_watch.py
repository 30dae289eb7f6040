"""The look-out that recovers after a worker died, with no restart."""

import os
import threading

from glance_convert.host import layout as layout_
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


def test_run_looks_at_once_then_every_interval_until_stopped(tmp_path):
    ws = make_ws(tmp_path)
    _dead_import(ws)   # before the look-out starts: the first look sees it
    released, stop = [], threading.Event()

    def recover(w):
        records = w.claim_orphans()
        released.extend(r['owner'] for r in records)
        w.settle_orphans(records, [])
        stop.set()

    look = watch.OrphanWatch(lambda: ws, recover, interval=3600)
    runner = threading.Thread(target=look.run, args=(stop,))
    runner.start()
    runner.join(30)
    assert not runner.is_alive()
    assert released == [IMAGE]


def test_a_look_out_service_is_seen_while_it_runs(tmp_path):
    layout = layout_.Layout(str(tmp_path / 'work'), str(tmp_path / 'locks'))
    assert not watch.is_following(layout)
    assert not os.path.exists(layout.lookout_lock_path)  # created nothing
    with watch.following(layout):
        assert watch.is_following(layout)
        with watch.following(layout):    # two at once are allowed
            assert watch.is_following(layout)
    assert not watch.is_following(layout)


def test_a_dead_look_out_service_is_not_seen(tmp_path):
    layout = layout_.Layout(str(tmp_path / 'work'), str(tmp_path / 'locks'))
    inside, stop = ctx.Event(), ctx.Event()

    def service():
        with watch.following(layout):
            inside.set()
            stop.wait(60)

    child = ctx.Process(target=service)
    child.start()
    assert inside.wait(30)
    assert watch.is_following(layout)
    child.kill()
    child.join(30)
    assert not watch.is_following(layout)
