"""One import's hold: the slot taken once, files removed on failure."""

import os

import pytest

from glance_convert import errors
from glance_convert.host import workspace as ws_mod
from glance_convert.pipeline import hold

IMAGE_ID = 'c5f1a0d2-0000-4000-8000-0000000000aa'


@pytest.fixture
def ws(tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    return ws_mod.Workspace(str(work), lock_dir=None, max_concurrent=1,
                            reserved_bytes=0, max_bytes=0)


def _held(workspace, ws, **kw):
    return hold.held(workspace, image_id=IMAGE_ID, work_dir=ws.work_dir,
                     **kw)


def _write(path):
    with open(path, 'wb') as f:
        f.write(b'x')


def test_slot_is_taken_at_the_first_reservation_only(ws):
    with _held(ws, ws) as work:
        # Nothing reserved yet: another import may still take the slot.
        with ws.slot('other', timeout=0):
            pass
        work.reserve(1, step='test')
        with pytest.raises(errors.WorkspaceError):
            with ws.slot('other', timeout=0):
                pass
    with ws.slot('other', timeout=0):
        pass


def test_a_joined_phase_shares_the_slot_and_keeps_its_own_files(ws):
    with _held(ws, ws) as outer:
        first = outer.work_file('first')
        outer.reserve(1, step='unpack', paths=(first,))
        _write(first)
        # One slot on this host: a second one would fail at once.
        with _held(outer, ws, slot_timeout=0) as inner:
            second = inner.work_file('second')
            inner.reserve(1, step='convert', paths=(second,))
            _write(second)
            inner.keep(second)
        assert os.path.exists(second)
        assert os.path.exists(first)
    assert not os.path.exists(first)   # not kept: removed at the end
    assert os.path.exists(second)


def test_a_failure_removes_every_file_of_the_phase_even_kept(ws):
    with pytest.raises(RuntimeError):
        with _held(ws, ws) as work:
            path = work.work_file('out')
            work.reserve(1, step='convert', paths=(path,))
            _write(path)
            work.keep(path)
            raise RuntimeError('qemu-img failed')
    assert not os.path.exists(path)
    assert ws.usage()['reservations'] == 0


def test_without_a_workspace_files_are_still_removed(tmp_path):
    with pytest.raises(RuntimeError):
        with hold.held(None, image_id=IMAGE_ID,
                       work_dir=str(tmp_path)) as work:
            path = work.work_file('out')
            work.reserve(1, step='convert', paths=(path,))
            _write(path)
            raise RuntimeError('boom')
    assert not os.path.exists(path)
