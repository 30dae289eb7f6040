"""Unit tests of the workspace facade: reservations, their work files,
dead holders seen end to end, and the configuration."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from glance_convert import errors
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
    wait_for(lambda: procs.process_start_time(sleep_pid) is None,
             'the orphaned child to die')
    # Its space is free again.
    with ws.reservation(OTHER, 3 * GiB):
        pass
    orphans = ws.take_orphans()
    assert [(o['owner'], o['info'], o['removed']) for o in orphans] == [
        (IMAGE, {'task_id': 'task-1'}, [out])]
    assert ws.take_orphans() == []


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
