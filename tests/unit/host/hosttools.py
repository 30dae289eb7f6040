"""Helpers shared by the unit tests of glance_convert.host."""

import json
import multiprocessing
import os
import time

import pytest

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


def write_ledger(ws, ledger):
    """Write ``ledger`` as the workspace's ledger file, as an older or
    crashed glance-api left it."""
    os.makedirs(ws.lock_dir, exist_ok=True)
    with open(ws.ledger_path, 'w') as f:
        json.dump(ledger, f)


def fake_entry(ws, pid, start, paths, nbytes=GiB):
    write_ledger(ws, {
        'entries': {'e1': {'owner': IMAGE, 'pid': pid, 'start': start,
                           'bytes': nbytes, 'paths': paths,
                           'processes': [], 'info': {}}},
        'orphans': []})
