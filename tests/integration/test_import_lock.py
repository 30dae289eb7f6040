"""A long import keeps Glance's import lock, through a real glance-api.

Glance lets a new import take over an image whose import task has not been
updated for 60 minutes.  An import that waits for a slot, unpacks or
converts for longer must keep saving its task.  Waiting an hour is not a
test, so the test moves Glance's clock instead: it sets the running task's
``updated_at`` two hours back in Glance's database, as if the hour had
passed, and watches the plugin save the task again.
"""

import contextlib
import datetime
import sqlite3
import time

import pytest

from glance_convert.host import workspace as workspaces
from glance_convert.testing import localglance
from tests import imagefactory

HOUR = 3600


def _db(server):
    return sqlite3.connect(server.database_url[len('sqlite:///'):],
                           timeout=30)


def _age(server, task_id):
    """Seconds since the task was last saved, as Glance computes it."""
    with contextlib.closing(_db(server)) as db:
        (updated,) = db.execute('SELECT updated_at FROM tasks WHERE id = ?',
                                (task_id,)).fetchone()
    updated = datetime.datetime.fromisoformat(updated)
    return (datetime.datetime.utcnow() - updated).total_seconds()


def _move_clock(server, task_id, seconds):
    """Make the task look ``seconds`` older than it is."""
    with contextlib.closing(_db(server)) as db, db:
        (updated,) = db.execute('SELECT updated_at FROM tasks WHERE id = ?',
                                (task_id,)).fetchone()
        older = (datetime.datetime.fromisoformat(updated)
                 - datetime.timedelta(seconds=seconds))
        db.execute('UPDATE tasks SET updated_at = ? WHERE id = ?',
                   (older.isoformat(sep=' '), task_id))


@contextlib.contextmanager
def _slot_taken(server):
    """Hold the host's one conversion slot, as another import would."""
    ws = workspaces.Workspace(server.staging_dir, lock_dir=server.lock_dir,
                              max_concurrent=1, reserved_bytes=0,
                              max_bytes=0)
    with ws.slot('test-holds-the-slot', 30):
        yield


def _waiting_import(server, source):
    """Start an import that has to wait for the slot; return its ids."""
    client = server.client()
    image = client.create_image('qcow2')
    client.stage(image['id'], source)
    client.import_image(image['id'], 'glance-direct')
    task_id = localglance.wait_until(
        lambda: client.get_image(image['id']).get('os_glance_import_task'),
        timeout=60, what='the import task')
    # Waiting: the plugin said so in the task (read from the database:
    # GET /tasks writes to sqlite, which can break a running import).
    localglance.wait_until(
        lambda: _message(server, task_id) == 'Waiting for a conversion slot',
        timeout=60, what='the import to wait for the slot')
    return client, image['id'], task_id


def _message(server, task_id):
    with contextlib.closing(_db(server)) as db:
        row = db.execute('SELECT message FROM task_info WHERE task_id = ?',
                         (task_id,)).fetchone()
    return row[0] if row else None


@pytest.fixture(scope='module')
def source(tmp_path_factory, qemu_tools):
    return imagefactory.make_image(tmp_path_factory.mktemp('lock'), 'qcow2')


@pytest.mark.parametrize('refresh', [1, 3000], ids=['refreshed', 'control'])
def test_a_waiting_import_keeps_its_lock(glance_servers, source, refresh):
    server = glance_servers.get(output_format='raw',
                                max_concurrent_conversions=1,
                                slot_wait_timeout=300,
                                task_refresh_interval=refresh)
    with _slot_taken(server):
        client, image_id, task_id = _waiting_import(server, source)
        _move_clock(server, task_id, 2 * HOUR)
        assert _age(server, task_id) > HOUR   # stale, as Glance sees it
        if refresh == 1:
            # The plugin saves its task again: the lock is fresh.
            localglance.wait_until(lambda: _age(server, task_id) < 60,
                                   timeout=60, what='the task to be saved')
        else:
            # The control: without a save the lock stays stale, and Glance
            # would let another import take the image over.
            time.sleep(5)
            assert _age(server, task_id) > HOUR
        # A second import of the image is refused while the first runs.
        with pytest.raises(localglance.GlanceHTTPError) as exc:
            client.import_image(image_id, 'glance-direct')
        assert exc.value.status == 409
    # The slot is free: the first import goes on and ends well.
    image, task = client.wait_for_import(image_id, timeout=300)
    assert task['status'] == 'success', task.get('message')
    assert image['status'] == 'active' and image['disk_format'] == 'raw'
    client.delete_image(image_id)
