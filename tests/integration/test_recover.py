"""``glance-convert recover`` after glance-api was SIGKILLed mid-conversion.

Issue 4 asks that after a crash and a restart nothing of the interrupted
import is left and the image can be imported again.  The plugin recovers
on the next import on the host; ``recover`` does it at start-up, with no
import at all, and is what these tests check.

To be "mid-conversion" without racing a fast conversion, the server finds
a wrapper first on its PATH: while the hold file exists, ``qemu-img
convert`` runs the real conversion (so the work file is there) and then,
instead of exiting, turns into a ``sleep`` with the same pid, so the plugin
still waits for it.  Every other qemu-img call goes straight through.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from glance_convert.testing import localglance
from glance_convert.flow import recovery
from glance_convert.host import procs
from glance_convert.host import workspace
from tests import imagefactory
from tests import proctools

TIMEOUT = 180           # for one step; a failure, not a limit

_WRAPPER = '''#!/bin/sh
if [ "$1" = convert ] && [ -e %(hold)s ]; then
    %(real)s "$@" || exit $?
    : > %(marks)s/converted.$$
    exec sleep 3600
fi
exec %(real)s "$@"
'''


@pytest.fixture
def hold(tmp_path, monkeypatch, qemu_tools):
    """A qemu-img wrapper on PATH; the hold file makes conversions hang."""
    bindir = tmp_path / 'bin'
    marks = tmp_path / 'marks'
    bindir.mkdir()
    marks.mkdir()
    hold_file = tmp_path / 'hold'
    wrapper = bindir / 'qemu-img'
    wrapper.write_text(_WRAPPER % {'hold': hold_file, 'marks': marks,
                                   'real': shutil.which('qemu-img')})
    wrapper.chmod(0o755)
    monkeypatch.setenv('PATH', '%s:%s' % (bindir, os.environ['PATH']))
    hold_file.touch()
    return {'file': hold_file, 'marks': marks}


@pytest.fixture
def server(tmp_path, hold):
    # The wrapper leaves marks in a directory of the test, which the
    # confinement of qemu-img forbids (as it should): recovery is what is
    # tested here, so qemu-img runs unconfined.
    srv = localglance.GlanceServer(str(tmp_path / 'glance'),
                                   plugin_conf={'output_format': 'qcow2',
                                                'sandbox': 'off'})
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def source(tmp_path):
    d = tmp_path / 'source'
    d.mkdir()
    return imagefactory.make_image(d, 'raw')


def _wait(predicate, what, server):
    return proctools.wait_for(predicate, what, TIMEOUT, server.log_tail,
                              interval=0.1)


def recover(server, *args):
    """Run ``glance-convert recover`` as the operator would."""
    env = dict(os.environ)
    env.pop('OS_GLANCE_CONFIG_DIR', None)
    proc = subprocess.run(
        [sys.executable, '-m', 'glance_convert.cmd', 'recover',
         '--config-dir', server.conf_dir] + list(args),
        env=env, cwd=server.base_dir, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        timeout=300)
    return proc


def _recover_json(server, *args):
    proc = recover(server, '--json', *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _crash_mid_conversion(server, hold, client, source):
    """Import ``source`` into a new image, SIGKILL glance-api while the
    conversion runs; return (image id, work files, qemu-img's pid)."""
    image = client.create_image('raw')
    image_id = image['id']
    client.stage(image_id, str(source))
    client.import_image(image_id, 'glance-direct')
    mark = _wait(lambda: os.listdir(hold['marks']),
                 'the conversion to start', server)
    pid = int(mark[0].split('.')[-1])
    work = [n for n in server.staging_files()
            if n.startswith(image_id + workspace.WORK_FILE_TAG)]
    assert work, server.staging_files()
    # The import is in flight: locked, importing, its task processing.
    image = client.get_image(image_id)
    assert image['status'] == 'importing'
    assert image['os_glance_import_task']
    server.kill()
    return image_id, image['os_glance_import_task'], work, pid


def test_recover_releases_an_interrupted_import_without_an_import(
        server, hold, source):
    client = server.client()
    image_id, task_id, work, pid = _crash_mid_conversion(
        server, hold, client, source)
    # The crash left the staged source and the work file behind.
    assert set(server.staging_files()) == {image_id} | set(work)

    # A dry run reports the image and changes nothing.
    report = _recover_json(server, '--dry-run')
    assert report['dry_run'] is True
    [entry] = report['interrupted']
    assert entry['image_id'] == image_id
    assert entry['task_id'] == task_id
    assert entry['result'] == 'would release'
    assert set(server.staging_files()) == {image_id} | set(work)

    report = _recover_json(server)
    [entry] = report['interrupted']
    assert (entry['image_id'], entry['result']) == (image_id, 'released')
    assert [os.path.basename(p) for p in entry['removed']] == work
    assert entry['staged_data'] == os.path.join(
        os.path.realpath(server.staging_dir), image_id)
    # Nothing is left, and glance-api is not running yet.
    assert server.staging_files() == []
    assert procs.process_start_time(pid) is None

    hold['file'].unlink()
    server.start()
    image = client.get_image(image_id)
    assert image['status'] == 'queued'
    assert 'os_glance_import_task' not in image
    assert image.get('os_glance_importing_to_stores', '') == ''
    assert image['os_glance_failed_import'] == 'fs'
    [task] = client.get_tasks(image_id)
    assert task['id'] == task_id
    assert task['status'] == 'failure'
    assert task['message'] == recovery.INTERRUPTED
    assert server.staging_files() == []

    # Running it again, with glance-api up (ExecStartPost), is harmless.
    assert _recover_json(server)['interrupted'] == []

    # The image can be staged and imported again at once.
    client.stage(image_id, str(source))
    client.import_image(image_id, 'glance-direct')
    image, task = client.wait_for_import(image_id, TIMEOUT)
    assert task['status'] == 'success', task['message']
    assert image['status'] == 'active'
    assert image['disk_format'] == 'qcow2'
    assert server.staging_files() == []
