"""Hostile images imported through a real glance-api.

The corpus cases most likely to hurt a Glance host (backing files, external
data files, VMDK extents naming host files, format mismatches) are staged
with glance-direct and imported.  The import must fail with the policy's
one sentence as the task message, the image must go back to ``queued``,
staging and the store must hold nothing of it, and no canary's bytes may be
found anywhere the server wrote.
"""

import contextlib
import os
import shutil

import pytest
from oslo_utils.imageutils import format_inspector

from glance_convert import formats

from tests import hostile_corpus
from tests import hostile_proofs
from tests.integration import glancetest

CASES = [
    'qcow2_backing_absolute',
    'qcow2_backing_relative',
    'qcow2_backing_json_spec',
    'qcow2_data_file_raw_on',
    'qcow2_data_file_raw_off',
    'vmdk_text_descriptor_absolute_extent',
    'vmdk_text_descriptor_relative_extent',
    'vmdk_embedded_descriptor_monolithic_flat',
    'vmdk_sparse_with_second_extent',
    'qcow2_claimed_raw',
    'vmdk_claimed_qcow2',
    'qcow2_hiding_qcow2_with_backing_file',
    'vhdx_differencing_parent_locator',
    'vhdx_log_needs_replay',
    'vhdx_region_beyond_eof',
    'ploop_size_beyond_bat',
    'ploop_clusters_shared',
    'ploop_claimed_raw',
]


@pytest.fixture(scope='module')
def corpus(tmp_path_factory, qemu_tools):
    directory = str(tmp_path_factory.mktemp('hostile'))
    return {c.name: c for c in hostile_corpus.build_corpus(directory)}


def _all_files(*dirs):
    for d in dirs:
        for root, _subdirs, names in os.walk(d):
            for name in names:
                yield os.path.join(root, name)


@pytest.mark.parametrize('name', CASES)
def test_hostile_import_is_refused(glance_servers, corpus, name):
    case = corpus[name]
    server = glance_servers.for_target(
        'qcow2' if case.claimed_format == 'raw' else 'raw')
    with _planted(case, server) as planted:
        client, image, task = glancetest.run_import(
            server, case.path, case.claimed_format, 'glance-direct')
        assert task['status'] == 'failure'
        assert task['message'].startswith('Image rejected: '), \
            task['message']
        assert case.reason_substring in task['message'], task['message']
        assert image['status'] == 'queued'
        assert 'fs' in image.get('os_glance_failed_import', '').split(',')
        assert glancetest.leftovers(server, image['id']) == []
        assert [n for n in os.listdir(server.store_dir)
                if n.startswith(image['id'])] == []
        if case.canary_path:
            canary = hostile_corpus.canary_bytes(case.canary_path)
            for path in _all_files(server.store_dir, server.staging_dir,
                                   server.tasks_dir):
                if path == planted:
                    continue
                with open(path, 'rb') as f:
                    assert canary not in f.read(), path
        client.delete_image(image['id'])


@contextlib.contextmanager
def _planted(case, server):
    """Put the canary where the image's relative name points, if it does.

    Relative names resolve next to the staged file: the canary goes there,
    where qemu-img would look for it.  Yields its path (or None).
    """
    planted = None
    if case.canary_path and not os.path.isabs(_named_path(case) or '/'):
        planted = os.path.join(server.staging_dir,
                               os.path.basename(case.canary_path))
        shutil.copyfile(case.canary_path, planted)
    try:
        yield planted
    finally:
        if planted:
            os.unlink(planted)


def _named_path(case):
    """The host path as the hostile image names it (None: no canary)."""
    if not case.canary_path:
        return None
    with open(case.path, 'rb') as f:
        data = f.read()
    return case.canary_path if case.canary_path.encode() in data else \
        os.path.basename(case.canary_path)


# -- the control: the same uploads through a converter without the checks --

UNCHECKED_PLUGIN = '''\
"""A converter without glance-convert's checks or sandbox (tests only).

What an import plugin that trusts the upload does: plain qemu-img convert
of the staged file, as claimed, to raw.
"""
import os
import subprocess

from taskflow import task
from taskflow.patterns import linear_flow

DRIVERS = %(drivers)r


class Convert(task.Task):
    default_provides = 'file_path'

    def __init__(self, action_wrapper):
        super().__init__(name='unchecked-convert')
        self.action_wrapper = action_wrapper

    def execute(self, file_path):
        src = file_path[len('file://'):]
        dst = src + '.unchecked'
        with self.action_wrapper as action:
            claimed = action.image_disk_format
            subprocess.run(['qemu-img', 'convert', '-f',
                            DRIVERS.get(claimed, claimed), '-O', 'raw',
                            src, dst], check=True)
            action.set_image_attribute(disk_format='raw',
                                       size=os.path.getsize(dst))
        return 'file://' + dst


def get_flow(**kwargs):
    return linear_flow.Flow('unchecked').add(
        Convert(kwargs['action_wrapper']))
'''


@pytest.fixture(scope='module')
def unchecked_server(glance_servers, tmp_path_factory):
    """A glance-api whose only import plugin converts without checks."""
    path = tmp_path_factory.mktemp('unchecked-plugin')
    # Glance's format names to qemu's (vhd is vpc, ploop parallels).
    drivers = {name: formats.qemu_driver(name)
               for name in formats.CONVERTIBLE}
    (path / 'glance_convert_unchecked.py').write_text(
        UNCHECKED_PLUGIN % {'drivers': drivers})
    info = path / 'glance_convert_unchecked-0.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text(
        'Metadata-Version: 2.1\nName: glance-convert-unchecked\n'
        'Version: 0\n')
    (info / 'entry_points.txt').write_text(
        '[glance.image_import.plugins]\n'
        'glance_convert_unchecked = glance_convert_unchecked:get_flow\n')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('PYTHONPATH', str(path))
        return glance_servers.get(plugins=('glance_convert_unchecked',))


#: Cases whose unchecked output Glance's own upload check refuses: there
#: the plugin's refusal brings the user's sentence, not the only defence.
GLANCE_REFUSES = {
    # The raw output is the hidden qcow2; Glance inspects what it stores,
    # finds a qcow2 with a backing file and fails the import (Internal
    # Error to the user).
    'qcow2_hiding_qcow2_with_backing_file',
}


def _stored_file(server, image_id):
    names = [n for n in os.listdir(server.store_dir)
             if n.startswith(image_id)]
    assert len(names) == 1, names
    return os.path.join(server.store_dir, names[0])


@pytest.mark.newest
@pytest.mark.parametrize('name', CASES)
def test_without_the_checks_the_attack_reaches_the_store(unchecked_server,
                                                         corpus, name):
    """The control of every refusal above: the same upload, converted
    without the plugin's checks, stores what its proof says -- the host
    file's bytes, a disk of another format, a malformed disk -- or fails
    where qemu-img refuses it too or Glance's own upload check catches the
    output (and the user reads "Internal Error")."""
    case = corpus[name]
    proof = hostile_proofs.PROOFS[name]
    with _planted(case, unchecked_server):
        client, image, task = glancetest.run_import(
            unchecked_server, case.path, case.claimed_format,
            'glance-direct')
    if proof is hostile_proofs.QEMU_REFUSES or name in GLANCE_REFUSES:
        assert task['status'] == 'failure'
        assert not task['message'].startswith('Image rejected'), task
    else:
        assert task['status'] == 'success', task['message']
        stored = _stored_file(unchecked_server, image['id'])
        if proof is hostile_proofs.READS_HOST_FILE:
            with open(stored, 'rb') as f:
                assert hostile_corpus.canary_bytes(case.canary_path) in \
                    f.read()
        elif proof is hostile_proofs.CONFUSES_FORMAT:
            found = format_inspector.detect_file_format(stored).NAME
            assert found != 'raw', found
        else:
            assert proof is hostile_proofs.ACCEPTED_SILENTLY, proof
            assert image['status'] == 'active'
    client.delete_image(image['id'])
