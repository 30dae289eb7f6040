"""qemu-img confinement inside a real glance-api.

The glance-api server inherits an environment that puts the hostile
stand-in (tests/standin.py) first on PATH, so every qemu-img the plugin
starts in the server is the stand-in.  An import through glance-direct
must succeed with the image intact, nothing stolen and nothing of the
stand-in left running when confined; with ``sandbox = off`` the same
import carries the stolen secrets into the store and leaves a process
behind, so the test can fail.
"""

import os
import subprocess

import pytest

from glance_convert.pipeline import qemu_img
from glance_convert.testing import localglance
from tests import standin
from tests.integration import glancetest

MiB = 1024 * 1024


class HostileGlance(localglance.GlanceServer):
    """A glance-api whose qemu-img is the stand-in."""

    escapes = None

    def write_config(self):
        super().write_config()
        if self.escapes is None:
            self.escapes = standin.Escapes(self.base_dir, self.staging_dir,
                                           self.conf_dir)

    @property
    def env(self):
        env = super().env
        return self.escapes.env(env) if self.escapes else env


@pytest.fixture
def source(tmp_path, qemu_tools):
    path = str(tmp_path / 'source.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', path, '8M'],
                   check=True)
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x5a 1M 2M',
                    path], check=True, capture_output=True)
    return path


@pytest.fixture(params=['auto', 'off'])
def server(request, tmp_path):
    glance = HostileGlance(str(tmp_path / ('glance-' + request.param)),
                           plugin_conf={'output_format': 'raw',
                                        'sandbox': request.param})
    try:
        glance.start()
        yield glance
    finally:
        glance.stop()
        if glance.escapes is not None:
            glance.escapes.close()


def test_import_through_glance_api(server, source):
    mode = server.plugin_conf['sandbox']
    escapes = server.escapes
    client, image, task = glancetest.run_import(server, source, 'qcow2',
                                                'glance-direct')
    assert task['status'] == 'success', (task['message'],
                                         server.log_tail())
    assert image['status'] == 'active' and image['disk_format'] == 'raw'
    stored = os.path.join(server.store_dir, image['id'])
    if mode == 'auto':
        assert escapes.stolen(stored) == []
        assert escapes.effects() == []
        # The stand-in could start no process: it became qemu-img, so the
        # data is intact and nothing was appended.
        assert os.path.getsize(stored) == 8 * MiB
        assert qemu_img.compare(source, 'qcow2', stored, 'raw')
    else:
        expected = {'canary', 'sibling', 'conf', 'listing', 'tcp',
                    'abstract', 'etc_glance', 'parent', 'owner', 'env',
                    'fork'} & set(escapes.attempts())
        stolen = set(escapes.stolen(stored))
        # 'proc' may or may not show: where gunicorn has setproctitle (the
        # newer releases' constraints), the process title overwrites the
        # environment block that /proc/PID/environ shows.
        assert stolen - {'proc'} == expected
        # Its own environment was glance-api's, secret included.
        assert 'env' in stolen
        # A process of the stand-in outlived the import, holding the
        # output open; the limits and priorities of another process of
        # the same user were changed.
        assert escapes.effects() == sorted(
            ['abstract', 'signal', 'tcp', 'write', 'linger', 'prlimit',
             'renice', 'scheduler', 'ioprio']
            + (['affinity'] if 'affinity' in escapes.attempts() else []))


def test_hostile_output_is_refused_through_glance_api(server, source,
                                                      tmp_path):
    """A qemu-img that writes a qcow2 where raw was asked for: the output
    checks refuse it, confined or not (they are not part of the
    confinement), and nothing is left behind."""
    escapes = server.escapes
    hidden = str(tmp_path / 'hidden.qcow2')
    subprocess.run([escapes.real_qemu_img, 'create', '-q', '-f', 'qcow2',
                    hidden, '8M'], check=True)
    escapes.set_behaviour('replace', hidden)
    client, image, task = glancetest.run_import(server, source, 'qcow2',
                                                'glance-direct')
    assert task['status'] == 'failure', task
    assert task['message'].startswith('Image rejected: '), task['message']
    assert 'hides another disk image' in task['message'], task['message']
    assert image['status'] == 'queued'
    assert glancetest.leftovers(server, image['id']) == []
    assert [n for n in os.listdir(server.store_dir)
            if n.startswith(image['id'])] == []
