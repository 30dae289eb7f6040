"""Imports through a real glance-api with the glance_convert plugin.

Each test creates an image, imports a source file with glance-direct or
web-download, waits for the import task to end, downloads what Glance
stored and proves with ``qemu-img compare`` that it holds the source's
guest data in the target format.
"""

import os
import subprocess

import pytest

from glance_convert import formats
from tests import imagefactory
from tests.integration import glancetest

# (source, target): what issues 2 and 12 ask for at least.
PAIRS = [
    ('qcow2', 'raw'),
    ('vmdk', 'raw'),
    ('vhd', 'qcow2'),
    ('vdi', 'vhd'),
    ('vhdx', 'raw'),
    ('qcow2', 'vhdx'),
]
# ploop, which Glance lists but no converter of Glance's handles: to and
# from every other format.
PAIRS += [(p, q) for other in formats.CONVERTIBLE if other != 'ploop'
          for p, q in (('ploop', other), (other, 'ploop'))]
METHODS = ['glance-direct', 'web-download']


def _detected_format(path):
    """oslo.utils' format inspector's verdict, in Glance's names (and
    for a format it has no inspector for, the format's magic)."""
    from oslo_utils.imageutils import format_inspector
    inspector = format_inspector.detect_file_format(path)
    found = formats.glance_name_for_inspector(str(inspector))
    return (formats.uninspected_format(path) or found if found == 'raw'
            else found)


def _assert_stored_image(client, image, source_path, source_fmt, target,
                         tmp_path):
    out = str(tmp_path / ('downloaded.%s' % target))
    nbytes = client.download(image['id'], out)

    assert image['status'] == 'active'
    assert image['disk_format'] == target
    assert image['container_format'] == 'bare'
    assert image['size'] == nbytes == os.path.getsize(out)
    assert image['virtual_size'] == \
        imagefactory.info(out, target)['virtual-size']
    md5, sha512 = glancetest.file_hashes(out)
    assert image['checksum'] == md5
    assert image['os_hash_algo'] == 'sha512'
    assert image['os_hash_value'] == sha512
    assert _detected_format(out) == target
    assert imagefactory.compare(source_path, source_fmt, out, target), (
        'guest data of the stored %s image differs from the %s source'
        % (target, source_fmt))
    return out


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('source,target', PAIRS,
                         ids=['%s-to-%s' % p for p in PAIRS])
def test_import_converts(glance_servers, source_dir, file_server, tmp_path,
                         method, source, target):
    server = glance_servers.for_target(target)
    source_path = source_dir / ('source.%s' % source)

    client, image, task = glancetest.run_import(
        server, source_path, source, method, file_server)

    assert task['status'] == 'success', task['message']
    _assert_stored_image(client, image, source_path, source, target,
                         tmp_path)
    assert glancetest.leftovers(server, image['id']) == []
    client.delete_image(image['id'])


def test_same_format_is_stored_untouched(glance_servers, source_dir,
                                         tmp_path):
    server = glance_servers.for_target('qcow2')
    source_path = source_dir / 'source.qcow2'

    client, image, task = glancetest.run_import(
        server, source_path, 'qcow2', 'glance-direct')

    assert task['status'] == 'success', task['message']
    out = _assert_stored_image(client, image, source_path, 'qcow2',
                               'qcow2', tmp_path)
    assert glancetest.file_hashes(out) == \
        glancetest.file_hashes(source_path)
    assert glancetest.leftovers(server, image['id']) == []


def _backed_qcow2(directory):
    base = imagefactory.make_raw(os.path.join(directory, 'base.raw'))
    path = os.path.join(directory, 'backed.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw',
                    '-b', base, path], check=True,
                   stdin=subprocess.DEVNULL)
    return path


@pytest.mark.parametrize('case', ['vmdk-claimed-qcow2', 'qcow2-backing-file'])
def test_rejected_import(glance_servers, source_dir, tmp_path, case):
    server = glance_servers.for_target('raw')
    if case == 'vmdk-claimed-qcow2':
        source_path, claimed = source_dir / 'source.vmdk', 'qcow2'
    else:
        source_path, claimed = _backed_qcow2(str(tmp_path)), 'qcow2'

    client, image, task = glancetest.run_import(
        server, source_path, claimed, 'glance-direct')

    assert task['status'] == 'failure'
    assert task['message'].startswith('Image rejected:'), task['message']
    assert image['status'] == 'queued'
    assert image['disk_format'] == claimed
    assert 'fs' in image.get('os_glance_failed_import', '').split(',')
    assert 'fs' not in image.get('os_glance_importing_to_stores',
                                 '').split(',')
    assert glancetest.leftovers(server, image['id']) == []
    # Nothing of the rejected image reached the store.
    assert [n for n in os.listdir(server.store_dir)
            if n.startswith(image['id'])] == []
