"""Compressed and OVA uploads imported through a real glance-api.

Each upload is made with the tools users use (xz, zstd, tar), imported
with glance-direct and web-download, and the stored image is downloaded
and compared with the image inside the upload.  The properties the plugin
sets (the publisher's SHA-256, the OVF's) must be on the image, and
nothing of the upload may remain in staging or the store.  A checksum
mismatch and a hostile OVA must fail the import with a readable reason and
leave the image queued with nothing behind.
"""

import os
import tarfile

import pytest

from tests import fileserver
from tests import imagefactory
from tests.functional.pipeline.test_compressed_images import compress
from tests.integration import glancetest
from tests.unit.pipeline import test_ova

SHA = 'glance_convert_source_sha256'
METHODS = ['glance-direct', 'web-download']


@pytest.fixture(scope='module')
def uploads(tmp_path_factory, qemu_tools):
    """{name: (upload path, inner format, inner image)}, served on loopback.
    """
    d = tmp_path_factory.mktemp('container-uploads')
    made = {}
    for fmt, kind in (('qcow2', 'xz'), ('vmdk', 'zstd')):
        inner = imagefactory.make_image(d, fmt, name='inner-%s.%s'
                                        % (kind, fmt))
        made['%s.%s' % (fmt, kind)] = (compress(inner, kind), fmt, inner)
    build = d / 'ova-build'
    build.mkdir()
    disk = imagefactory.make_image(build, 'vmdk', name='disk1.vmdk',
                                   options={'subformat': 'streamOptimized'})
    appliance = imagefactory.make_ova(
        build, test_ova.ovf_text(size=os.path.getsize(disk)), disk,
        out=d / 'appliance.ova', tar_format='gnu')
    made['ova'] = (appliance, 'vmdk', disk)
    with fileserver.FileServer(str(d)) as server:
        yield made, server


def _import(server, path, disk_format, container_format, method,
            file_server, **properties):
    client = server.client()
    image = client.create_image(disk_format, container_format,
                                **properties)
    if method == 'glance-direct':
        client.stage(image['id'], str(path))
        client.import_image(image['id'], 'glance-direct')
    else:
        client.import_image(image['id'], 'web-download',
                            uri=file_server.url_for(path))
    image, task = client.wait_for_import(image['id'],
                                         glancetest.IMPORT_TIMEOUT)
    return client, image, task


def _nothing_left(server, image_id):
    assert glancetest.leftovers(server, image_id) == []
    assert [n for n in os.listdir(server.tasks_dir)
            if n.startswith(image_id)] == []


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('name', ['qcow2.xz', 'vmdk.zstd', 'ova'])
def test_container_upload_is_stored_converted(glance_servers, uploads,
                                              tmp_path, method, name):
    made, file_server = uploads
    path, fmt, inner = made[name]
    container = 'ova' if name == 'ova' else 'compressed'
    published = imagefactory.sha256_of(path)
    server = glance_servers.for_target('raw')

    client, image, task = _import(server, path, fmt, container, method,
                                  file_server, **{SHA: published})

    assert task['status'] == 'success', task['message']
    assert image['status'] == 'active'
    assert (image['disk_format'], image['container_format']) == (
        'raw', 'bare')
    assert image[SHA] == published
    out = str(tmp_path / 'stored.raw')
    assert client.download(image['id'], out) == image['size']
    md5, sha512 = glancetest.file_hashes(out)
    assert (image['checksum'], image['os_hash_value']) == (md5, sha512)
    assert imagefactory.compare(inner, fmt, out, 'raw')
    if container == 'ova':
        assert image['hw_firmware_type'] == 'uefi'
        assert image['glance_convert_ovf_memory_mb'] == '2048'
        assert image['glance_convert_ovf_cpus'] == '2'
        assert image['glance_convert_ovf_os_type'] == 'ubuntu64Guest'
    _nothing_left(server, image['id'])
    client.delete_image(image['id'])


def test_the_checksum_is_recorded_when_none_was_given(glance_servers,
                                                      uploads):
    made, file_server = uploads
    path, fmt, _inner = made['qcow2.xz']
    server = glance_servers.for_target('raw')
    client, image, task = _import(server, path, fmt, 'compressed',
                                  'web-download', file_server)
    assert task['status'] == 'success', task['message']
    assert image[SHA] == imagefactory.sha256_of(path)
    client.delete_image(image['id'])


def _assert_refused(server, image, task, words):
    assert task['status'] == 'failure'
    assert task['message'].startswith('Image rejected: '), task['message']
    assert words in task['message'], task['message']
    assert image['status'] == 'queued'
    assert 'fs' in image.get('os_glance_failed_import', '').split(',')
    _nothing_left(server, image['id'])
    assert [n for n in os.listdir(server.store_dir)
            if n.startswith(image['id'])] == []


@pytest.mark.parametrize('method', METHODS)
def test_checksum_mismatch_is_refused(glance_servers, uploads, method):
    made, file_server = uploads
    path, fmt, _inner = made['vmdk.zstd']
    server = glance_servers.for_target('raw')
    client, image, task = _import(server, path, fmt, 'compressed', method,
                                  file_server, **{SHA: 'ab' * 32})
    _assert_refused(server, image, task,
                    'the SHA-256 of the upload is %s, not %s'
                    % (imagefactory.sha256_of(path), 'ab' * 32))
    assert image['container_format'] == 'compressed'
    client.delete_image(image['id'])


def test_ova_with_a_symlink_is_refused(glance_servers, uploads, tmp_path):
    made, _file_server = uploads
    _path, _fmt, disk = made['ova']
    hostile = str(tmp_path / 'link.ova')
    canary = tmp_path / 'host-file'
    canary.write_bytes(b'CANARY-' + os.urandom(32))
    with tarfile.open(hostile, 'w', format=tarfile.USTAR_FORMAT) as tar:
        ovf = tmp_path / 'vm.ovf'
        ovf.write_bytes(test_ova.ovf_text())
        tar.add(str(ovf), arcname='vm.ovf')
        link = tarfile.TarInfo('disk1.vmdk')
        link.type = tarfile.SYMTYPE
        link.linkname = str(canary)
        tar.addfile(link)
    # The control: unpacked without the check, the "disk" is the host file.
    unpacked = tmp_path / 'unchecked'
    test_ova.unchecked_extract(hostile, str(unpacked))
    assert (unpacked / 'disk1.vmdk').read_bytes() == canary.read_bytes()
    server = glance_servers.for_target('raw')
    client, image, task = _import(server, hostile, 'vmdk', 'ova',
                                  'glance-direct', None)
    _assert_refused(server, image, task, "a link ('disk1.vmdk')")
    client.delete_image(image['id'])


@pytest.mark.parametrize('method', METHODS)
def test_compressed_upload_declared_bare_is_unpacked(glance_servers, uploads,
                                                     tmp_path, method):
    # A *.qcow2.xz uploaded without container_format=compressed: stored
    # as the converted disk inside, not as xz bytes called qcow2.
    made, file_server = uploads
    path, fmt, inner = made['qcow2.xz']
    server = glance_servers.for_target('raw')
    client, image, task = _import(server, path, fmt, 'bare', method,
                                  file_server)
    assert task['status'] == 'success', task.get('message')
    assert (image['disk_format'], image['container_format']) == (
        'raw', 'bare')
    stored = str(tmp_path / 'stored.raw')
    client.download(image['id'], stored)
    assert imagefactory.compare(stored, 'raw', inner, fmt)
    _nothing_left(server, image['id'])
    client.delete_image(image['id'])


def test_compressed_upload_declared_bare_refused_when_asked(glance_servers,
                                                            uploads):
    made, _file_server = uploads
    path, fmt, _inner = made['vmdk.zstd']
    server = glance_servers.get(output_format='raw',
                                bare_compression='refuse')
    client, image, task = _import(server, path, fmt, 'bare',
                                  'glance-direct', None)
    _assert_refused(server, image, task, 'this upload is zstd-compressed: '
                    'set container_format=compressed')
    client.delete_image(image['id'])
