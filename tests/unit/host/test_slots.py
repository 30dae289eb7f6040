"""Unit tests of the conversion slots and their fair queue."""

import contextlib
import fcntl
import json
import os
import threading
import time

import pytest

from glance_convert import errors
from glance_convert.host import workspace
from tests.unit.host.hosttools import IMAGE
from tests.unit.host.hosttools import OTHER
from tests.unit.host.hosttools import ctx
from tests.unit.host.hosttools import make_ws


def test_slots_limit_holders_and_time_out_with_a_message(tmp_path):
    ws = make_ws(tmp_path, max_concurrent=2)
    waited = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(ws.slot(IMAGE, timeout=0))
        stack.enter_context(ws.slot(OTHER, timeout=0))
        with pytest.raises(errors.WorkspaceError) as exc:
            with ws.slot(IMAGE, timeout=0.3,
                         on_wait=lambda: waited.append(1)):
                pytest.fail('a third slot was granted')
    assert str(exc.value) == ('No conversion slot became free within 0 '
                              'seconds; try the import again later')
    assert waited == [1]
    # Both slots are free again.
    with ws.slot(IMAGE, timeout=0), ws.slot(OTHER, timeout=0):
        pass


def test_slot_wait_can_be_cancelled(tmp_path):
    ws = make_ws(tmp_path, max_concurrent=1)
    calls = []

    def should_cancel():
        calls.append(1)
        return len(calls) >= 3

    with ws.slot(IMAGE, timeout=0):
        with pytest.raises(errors.ConversionCancelled):
            with ws.slot(OTHER, timeout=600, should_cancel=should_cancel):
                pass
    assert len(calls) == 3


def test_waiters_get_slots_in_arrival_order(tmp_path):
    ws = make_ws(tmp_path, max_concurrent=1)
    order = []
    queued = {name: threading.Event() for name in 'ABC'}

    def waiter(name):
        with ws.slot(name, timeout=120, on_wait=queued[name].set):
            order.append(name)

    threads = {}
    with ws.slot('holder', timeout=0):
        for name in 'ABC':  # each joins the queue before the next starts
            threads[name] = threading.Thread(target=waiter, args=(name,))
            threads[name].start()
            assert queued[name].wait(60)
    for t in threads.values():
        t.join(120)
    assert order == ['A', 'B', 'C']
    with open(ws.ledger_path) as f:
        assert json.load(f)['queue'] == []


def test_dead_waiters_do_not_block_the_queue(tmp_path):
    ws = make_ws(tmp_path, max_concurrent=1)
    os.makedirs(ws.lock_dir)
    with open(ws.ledger_path, 'w') as f:
        json.dump({'entries': {}, 'orphans': [], 'queue': [
            {'id': 'x', 'owner': OTHER, 'pid': 2 ** 22 + 1, 'start': 1,
             'since': 0}]}, f)
    with ws.slot(IMAGE, timeout=0):
        pass


def test_zero_means_unlimited_slots(tmp_path):
    ws = make_ws(tmp_path, max_concurrent=0)
    with contextlib.ExitStack() as stack:
        for _ in range(20):
            stack.enter_context(ws.slot(IMAGE, timeout=0))


def test_slots_are_per_work_dir(tmp_path):
    locks = str(tmp_path / 'locks')
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    a = workspace.Workspace(str(tmp_path / 'a'), lock_dir=locks,
                            max_concurrent=1, reserved_bytes=0, max_bytes=0)
    a2 = workspace.Workspace(str(tmp_path / 'a'), lock_dir=locks,
                             max_concurrent=1, reserved_bytes=0, max_bytes=0)
    b = workspace.Workspace(str(tmp_path / 'b'), lock_dir=locks,
                            max_concurrent=1, reserved_bytes=0, max_bytes=0)
    with a.slot(IMAGE, timeout=0):
        with b.slot(OTHER, timeout=0):  # another node's work dir
            pass
        with pytest.raises(errors.WorkspaceError):
            with a2.slot(OTHER, timeout=0):  # same work dir, same host
                pass
    assert a.ledger_path == a2.ledger_path != b.ledger_path


def test_lock_dir_defaults_to_work_dir(tmp_path):
    ws = workspace.Workspace(str(tmp_path), lock_dir=None, max_concurrent=1,
                             reserved_bytes=0, max_bytes=0)
    with ws.slot(IMAGE, timeout=0):
        names = os.listdir(tmp_path)
    assert 'glance-convert-%s-slot-0.lock' % ws.key in names
    # Not <image-uuid>.* names: Glance's housekeeper leaves them alone.
    assert all(n.startswith('glance-convert-%s' % ws.key) for n in names)


def _slot_worker(ws, counter_path, limit, results):
    """Enter a slot; count holders in a flock-guarded file."""
    def bump(delta):
        with open(counter_path, 'r+') as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            now, peak = map(int, f.read().split())
            now += delta
            peak = max(peak, now)
            f.seek(0)
            f.truncate()
            f.write('%d %d' % (now, peak))
            return peak

    with ws.slot(IMAGE, timeout=120):
        peak = bump(+1)
        # Stay until the host was seen full once, so the peak is reached
        # whenever the limit lets it be (bounded, never asserted on time).
        deadline = time.monotonic() + 5
        while peak < limit and time.monotonic() < deadline:
            time.sleep(0.01)
            peak = bump(0)
        time.sleep(0.02)
        bump(-1)
    results.put(os.getpid())


@pytest.mark.parametrize('limit', [1, 2])
def test_processes_never_exceed_the_slot_limit(tmp_path, limit):
    ws = make_ws(tmp_path, max_concurrent=limit)
    counter = tmp_path / 'counter'
    counter.write_text('0 0')
    results = ctx.Queue()
    procs = [ctx.Process(target=_slot_worker,
                         args=(ws, str(counter), limit, results))
             for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    done = {results.get(timeout=5) for _ in procs}
    assert len(done) == 6
    now, peak = map(int, counter.read_text().split())
    assert now == 0
    assert peak == limit


def test_threads_exclude_each_other_too(tmp_path):
    ws = make_ws(tmp_path, max_concurrent=1)
    inside = []
    peak = []
    lock = threading.Lock()

    def worker():
        with ws.slot(IMAGE, timeout=60):
            with lock:
                inside.append(1)
                peak.append(len(inside))
            time.sleep(0.01)
            with lock:
                inside.pop()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(peak) == 6 and max(peak) == 1
