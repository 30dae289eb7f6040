"""Hostile images imported through a real glance-api.

The corpus cases most likely to hurt a Glance host (backing files, external
data files, VMDK extents naming host files, format mismatches) are staged
with glance-direct and imported.  The import must fail with the policy's
one sentence as the task message, the image must go back to ``queued``,
staging and the store must hold nothing of it, and no canary's bytes may be
found anywhere the server wrote.
"""

import os
import shutil

import pytest

from tests import hostile_corpus
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
    planted = None
    if case.canary_path and not os.path.isabs(
            _named_path(case) or '/'):
        # Relative names resolve next to the staged file: put the canary
        # there, where qemu-img would look for it.
        planted = os.path.join(server.staging_dir,
                               os.path.basename(case.canary_path))
        shutil.copyfile(case.canary_path, planted)
    try:
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
