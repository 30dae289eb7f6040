"""Unit tests of the per-host workspace: slots, reservations, reaping."""

import contextlib
import fcntl
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from glance_convert import errors
from glance_convert.host import workspace

MiB = 1024 * 1024
GiB = 1024 * MiB
IMAGE = '0b7f5c2e-1111-4a4a-9c9c-0123456789ab'
OTHER = '5d2c1e0f-2222-4b4b-8d8d-ba9876543210'

# fork keeps the test module's functions picklable-free and fast.
ctx = multiprocessing.get_context('fork')


def fake_disk(capacity, work_dir):
    """A file system of ``capacity`` bytes holding the files in work_dir."""
    def disk_space(path):
        used = sum(os.stat(os.path.join(work_dir, n)).st_blocks * 512
                   for n in os.listdir(work_dir)
                   if os.path.isfile(os.path.join(work_dir, n)))
        return capacity, capacity - used
    return disk_space


def make_ws(tmp_path, capacity=10 * GiB, **kw):
    work = tmp_path / 'work'
    work.mkdir(exist_ok=True)
    args = dict(lock_dir=str(tmp_path / 'locks'), max_concurrent=2,
                reserved_bytes=0, max_bytes=0,
                disk_space=fake_disk(capacity, str(work)))
    args.update(kw)
    return workspace.Workspace(str(work), **args)


def write_data(path, nbytes):
    with open(path, 'wb') as f:
        f.write(os.urandom(nbytes))
        f.flush()
        os.fsync(f.fileno())


def wait_for(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail('timed out waiting for %s' % what)
        time.sleep(0.02)


# ----------------------------------------------------------- reservations

def test_reservation_fits_and_is_released(tmp_path):
    ws = make_ws(tmp_path, capacity=4 * GiB)
    with ws.reservation(IMAGE, 3 * GiB) as res:
        assert ws.usage()['reserved_bytes'] == 3 * GiB
        assert res.nbytes == 3 * GiB
    assert ws.usage() == {'reservations': 0, 'reserved_bytes': 0,
                          'paths': []}


def test_too_big_for_the_disk_fails_with_a_user_sentence(tmp_path):
    ws = make_ws(tmp_path, capacity=4 * GiB, reserved_bytes=1 * GiB)
    with pytest.raises(errors.WorkspaceError) as exc:
        with ws.reservation(IMAGE, int(3.5 * GiB)):
            pytest.fail('reservation should not be granted')
    msg = str(exc.value)
    assert msg.startswith('Not enough space to convert this image')
    assert 'needs 3.5 GiB' in msg and 'at most 3.0 GiB' in msg, msg
    assert 'reserved_space_mb=1024' in exc.value.detail
    assert ws.usage()['reservations'] == 0


def test_reserved_bytes_are_left_free(tmp_path):
    ws = make_ws(tmp_path, capacity=4 * GiB, reserved_bytes=1 * GiB)
    with ws.reservation(IMAGE, 3 * GiB):
        pass
    with pytest.raises(errors.WorkspaceError):
        with ws.reservation(IMAGE, 3 * GiB + 1):
            pass


def test_max_bytes_caps_all_reservations(tmp_path):
    ws = make_ws(tmp_path, capacity=100 * GiB, max_bytes=5 * GiB)
    with pytest.raises(errors.WorkspaceError, match='at most 5.0 GiB'):
        with ws.reservation(IMAGE, 6 * GiB):
            pass
    with ws.reservation(IMAGE, 3 * GiB):
        # Fits the disk but not the cap while the first one holds 3 GiB.
        with pytest.raises(errors.WorkspaceError,
                           match='only 2.0 GiB is free.*try the import '
                                 'again later'):
            with ws.reservation(OTHER, 3 * GiB):
                pass
        with ws.reservation(OTHER, 2 * GiB):
            assert ws.usage()['reserved_bytes'] == 5 * GiB


def test_finished_output_counts_against_disk_but_not_the_cap(tmp_path):
    # The output of a finished conversion waits for its upload: it takes
    # disk space, but max_workspace_bytes bounds conversions in progress.
    ws = make_ws(tmp_path, capacity=10 * MiB, max_bytes=5 * MiB)
    with ws.reservation(IMAGE, 4 * MiB) as res:
        write_data(res.path('out'), 4 * MiB)
    with ws.reservation(OTHER, 5 * MiB):
        pass
    with pytest.raises(errors.WorkspaceError) as exc:
        with ws.reservation(OTHER, 7 * MiB):
            pass
    assert str(exc.value) == (
        'Not enough space to convert this image: it needs 7 MiB of work '
        'space and this host can provide at most 5 MiB')
    ws.max_bytes = 0
    with pytest.raises(errors.WorkspaceError) as exc:
        with ws.reservation(OTHER, 7 * MiB):
            pass
    # 6 MiB free now; 10 MiB once the finished output is uploaded.
    assert 'only 6 MiB is free' in str(exc.value)


def test_others_reservations_count_against_free_space(tmp_path):
    ws = make_ws(tmp_path, capacity=4 * GiB)
    with ws.reservation(IMAGE, 3 * GiB):
        with pytest.raises(errors.WorkspaceError, match='now'):
            with ws.reservation(OTHER, 2 * GiB):
                pass


def test_written_bytes_are_not_counted_twice(tmp_path):
    # 8 MiB disk; the first conversion reserved 6 MiB and wrote 4 of them.
    # Free space already lacks those 4 MiB, so 2 MiB are left to grant.
    ws = make_ws(tmp_path, capacity=8 * MiB)
    with ws.reservation(IMAGE, 6 * MiB) as res:
        write_data(res.path('out'), 4 * MiB)
        with ws.reservation(OTHER, 2 * MiB):
            pass
        with pytest.raises(errors.WorkspaceError):
            with ws.reservation(OTHER, 2 * MiB + 64 * 1024):
                pass


def test_waiting_reservation_gets_space_when_another_ends(tmp_path):
    ws = make_ws(tmp_path, capacity=4 * GiB)
    first_done = threading.Event()
    waits = []

    def hold_until_second_waits():
        with ws.reservation(IMAGE, 3 * GiB):
            wait_for(lambda: waits, 'the second reservation to wait')
        first_done.set()

    t = threading.Thread(target=hold_until_second_waits)
    with ws.reservation(OTHER, 0):  # make sure the ledger exists
        pass
    t.start()
    wait_for(lambda: ws.usage()['reserved_bytes'] == 3 * GiB,
             'the first reservation')
    with ws.reservation(OTHER, 2 * GiB, timeout=60,
                        on_wait=lambda: waits.append(1)):
        assert first_done.is_set()
    t.join()
    assert waits == [1]


def test_waiting_reservation_can_be_cancelled(tmp_path):
    ws = make_ws(tmp_path, capacity=4 * GiB)
    with ws.reservation(IMAGE, 3 * GiB):
        with pytest.raises(errors.ConversionCancelled):
            with ws.reservation(OTHER, 2 * GiB, timeout=600,
                                should_cancel=lambda: True):
                pass


def test_release_on_exception_removes_files(tmp_path):
    ws = make_ws(tmp_path)
    with pytest.raises(RuntimeError):
        with ws.reservation(IMAGE, 10 * MiB) as res:
            tmp = res.path('tmp')
            write_data(tmp, 1024)
            raise RuntimeError('conversion failed')
    assert not os.path.exists(tmp)
    assert ws.usage()['paths'] == []
    assert ws.usage()['reservations'] == 0


def test_files_of_a_success_stay_tracked_until_they_are_gone(tmp_path):
    ws = make_ws(tmp_path)
    with ws.reservation(IMAGE, 10 * MiB) as res:
        out = res.path('out')
        write_data(out, 1024)
    assert os.path.exists(out)  # the converted image, for Glance to upload
    usage = ws.usage()
    assert usage == {'reservations': 0, 'reserved_bytes': 0,
                     'paths': [out]}
    os.unlink(out)  # Glance's DeleteFromFS after the upload
    assert ws.usage()['paths'] == []
    with open(ws.ledger_path) as f:
        assert json.load(f)['entries'] == {}


def test_kept_file_survives_a_failure(tmp_path):
    ws = make_ws(tmp_path)
    with pytest.raises(RuntimeError):
        with ws.reservation(IMAGE, 10 * MiB) as res:
            out = res.path('out')
            scratch = res.path('scratch')
            write_data(out, 1024)
            write_data(scratch, 1024)
            res.keep(out)
            raise RuntimeError('late failure')
    assert os.path.exists(out) and not os.path.exists(scratch)
    assert ws.usage()['paths'] == [out]


def test_caller_named_paths_are_tracked(tmp_path):
    ws = make_ws(tmp_path)
    part = os.path.join(ws.work_dir, IMAGE + '.glance-convert.part')
    final = os.path.join(ws.work_dir, IMAGE + '.glance-convert.raw')
    via_symlink = tmp_path / 'link'
    via_symlink.symlink_to(ws.work_dir)
    with pytest.raises(RuntimeError):
        with ws.reservation(IMAGE, MiB, paths=[part]) as res:
            assert ws.usage()['paths'] == [part]
            write_data(part, 10)
            assert res.track(str(via_symlink / os.path.basename(final))) \
                == final
            write_data(final, 10)
            raise RuntimeError('failed')
    assert not os.path.exists(part) and not os.path.exists(final)
    for bad in (str(tmp_path / (IMAGE + '.glance-convert.raw')),
                os.path.join(ws.work_dir, OTHER + '.glance-convert.raw'),
                os.path.join(ws.work_dir, IMAGE)):
        with pytest.raises(ValueError):
            with ws.reservation(IMAGE, 0, paths=[bad]):
                pass
    with ws.reservation(IMAGE, 0) as res:
        res.track(part)
        res.forget(part)
        assert ws.usage()['paths'] == []


def test_from_conf_reads_the_options(tmp_path):
    from oslo_config import cfg

    from glance_convert import options
    conf = cfg.ConfigOpts()
    conf.register_opts(options.ALL_OPTS, group=options.GROUP)
    conf([], project='test')
    conf.set_override('max_concurrent_conversions', 3, options.GROUP)
    conf.set_override('reserved_space_mb', 7, options.GROUP)
    conf.set_override('max_workspace_bytes', 12345, options.GROUP)
    conf.set_override('work_dir', str(tmp_path / 'w'), options.GROUP)
    ws = workspace.from_conf(conf=conf)
    assert (ws.work_dir, ws.lock_dir) == (str(tmp_path / 'w'),) * 2
    assert (ws.max_concurrent, ws.reserved_bytes, ws.max_bytes) == (
        3, 7 * MiB, 12345)
    conf.register_opts([cfg.StrOpt('lock_path')], group='oslo_concurrency')
    conf.set_override('lock_path', str(tmp_path / 'l'), 'oslo_concurrency')
    ws = workspace.from_conf(str(tmp_path / 'other'), conf=conf)
    assert (ws.work_dir, ws.lock_dir) == (str(tmp_path / 'other'),
                                          str(tmp_path / 'l'))


def test_work_file_names(tmp_path):
    ws = make_ws(tmp_path)
    with ws.reservation(IMAGE, 0) as res:
        path = res.path('qcow2')
    assert os.path.dirname(path) == ws.work_dir
    # Glance's housekeeper reaps <image-id>.* of deleted images.
    assert os.path.basename(path) == IMAGE + '.glance-convert.qcow2'
    for owner in ('../etc', 'a/b', '', '.hidden', 'x' * 200):
        with pytest.raises(ValueError):
            with ws.reservation(owner, 0):
                pass
    with ws.reservation(IMAGE, 0) as res:
        for suffix in ('../x', 'a/b', ''):
            with pytest.raises(ValueError):
                res.path(suffix)
        with pytest.raises(ValueError):
            res.keep(os.path.join(ws.work_dir, 'not-mine'))
        with pytest.raises(ValueError):
            res.track(os.path.join(ws.work_dir, 'not-mine'))


# ------------------------------------------------------------------ slots

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


# ------------------------------------------------------- dead holders

def _crashing_holder(ws, ready):
    with ws.slot(IMAGE, timeout=0):
        with ws.reservation(IMAGE, 3 * GiB,
                            info={'task_id': 'task-1'}) as res:
            write_data(res.path('out'), 4096)
            child = subprocess.Popen(['sleep', '600'])
            res.add_process(child.pid)
            ready.put(child.pid)
            time.sleep(600)


def test_dead_holder_frees_slot_space_and_files(tmp_path):
    ws = make_ws(tmp_path, capacity=4 * GiB, max_concurrent=1)
    ready = ctx.Queue()
    holder = ctx.Process(target=_crashing_holder, args=(ws, ready))
    holder.start()
    try:
        sleep_pid = ready.get(timeout=30)
        out = ws.work_path(IMAGE, 'out')
        assert os.path.exists(out)
        with pytest.raises(errors.WorkspaceError):
            with ws.slot(OTHER, timeout=0):
                pass
        assert ws.usage()['reserved_bytes'] == 3 * GiB
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
    finally:
        if holder.is_alive():
            holder.kill()
    assert ws.reap_orphans() == [out]
    assert not os.path.exists(out)
    assert ws.reap_orphans() == []
    # The kernel dropped the slot's flock.
    with ws.slot(OTHER, timeout=0):
        pass
    # The qemu-img stand-in the dead holder started was killed.
    wait_for(lambda: workspace.process_start_time(sleep_pid) is None,
             'the orphaned child to die')
    # Its space is free again.
    with ws.reservation(OTHER, 3 * GiB):
        pass
    orphans = ws.take_orphans()
    assert [(o['owner'], o['info'], o['removed']) for o in orphans] == [
        (IMAGE, {'task_id': 'task-1'}, [out])]
    assert ws.take_orphans() == []


def _fake_entry(ws, pid, start, paths, nbytes=GiB):
    os.makedirs(ws.lock_dir, exist_ok=True)
    ledger = {'entries': {'e1': {'owner': IMAGE, 'pid': pid, 'start': start,
                                 'bytes': nbytes, 'paths': paths,
                                 'processes': [], 'info': {}}},
              'orphans': []}
    with open(ws.ledger_path, 'w') as f:
        json.dump(ledger, f)


def test_reused_pid_is_not_mistaken_for_the_holder(tmp_path):
    ws = make_ws(tmp_path)
    out = ws.work_path(IMAGE, 'out')
    write_data(out, 10)
    me = os.getpid()
    real_start = workspace.process_start_time(me)
    assert real_start is not None
    # Same pid, the start time a previous process with that pid had.
    _fake_entry(ws, me, real_start - 1, [out])
    assert ws.reap_orphans() == [out]
    assert not os.path.exists(out)
    # The genuine holder (same pid and start time) is left alone.
    write_data(out, 10)
    _fake_entry(ws, me, real_start, [out])
    assert ws.reap_orphans() == []
    assert os.path.exists(out)
    assert ws.usage()['reserved_bytes'] == GiB


def test_process_start_time_parses_odd_command_names(tmp_path):
    # A command name with spaces and parentheses must not shift fields.
    script = tmp_path / 'x) (y z'
    # No child processes: killing it must leave nothing behind.
    script.write_text('#!%s\nimport time\ntime.sleep(600)\n'
                      % sys.executable)
    script.chmod(0o755)
    p = subprocess.Popen([str(script)])
    try:
        wait_for(lambda: b'x) (y' in open('/proc/%d/stat' % p.pid,
                                          'rb').read(), 'exec')
        start = workspace.process_start_time(p.pid)
        with open('/proc/self/stat', 'rb') as f:
            mine = int(f.read().rsplit(b')', 1)[1].split()[19])
        assert start is not None and start >= mine
    finally:
        p.kill()
        p.wait()
    assert workspace.process_start_time(p.pid) is None


def test_reaper_never_removes_foreign_files(tmp_path):
    ws = make_ws(tmp_path)
    victim = tmp_path / 'precious'
    victim.write_text('keep me')
    staged = os.path.join(ws.work_dir, IMAGE)  # Glance's staged data
    write_data(staged, 10)
    _fake_entry(ws, 2 ** 22 + 1, 1, [str(victim), staged])
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


def test_unusable_lock_dir_gives_a_clear_error(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    ws = workspace.Workspace(str(tmp_path), lock_dir=str(blocker / 'locks'),
                             max_concurrent=1, reserved_bytes=0, max_bytes=0)
    for ctxmgr in (ws.slot(IMAGE, timeout=0), ws.reservation(IMAGE, 1)):
        with pytest.raises(errors.WorkspaceError) as exc:
            with ctxmgr:
                pass
        assert 'contact the cloud operator' in str(exc.value)
        assert str(blocker) in exc.value.detail


def test_entries_survive_a_fork_with_the_right_pid(tmp_path):
    """A Workspace made before gunicorn forks records the worker's pid."""
    ws = make_ws(tmp_path)
    with ws.reservation(IMAGE, 0):
        pass
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            with ws.reservation(OTHER, MiB):
                with open(ws.ledger_path) as f:
                    e = list(json.load(f)['entries'].values())[0]
                os.write(w, b'1' if e['pid'] == os.getpid() else b'0')
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b'1'
    os.waitpid(pid, 0)
    os.close(r)


if __name__ == '__main__':  # pragma: no cover
    sys.exit(pytest.main([__file__, '-v']))
