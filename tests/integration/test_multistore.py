"""A converted image imported into two stores at once.

Glance's multi-store import uploads the staged file to each store in turn
and re-checks the image's size and hashes against every upload.  After a
conversion, those must be the converted file's, in both stores.  The
second store is a file store of its own, standing in for another backend.
"""

import hashlib
import os

import pytest

from glance_convert.testing import localglance
from tests import imagefactory

pytestmark = pytest.mark.newest


@pytest.fixture(scope='module')
def two_stores(tmp_path_factory, qemu_tools):
    base = tmp_path_factory.mktemp('two-stores')
    second = base / 'second-store'
    second.mkdir()
    server = localglance.GlanceServer(
        str(base / 'glance'), plugin_conf={'output_format': 'raw'},
        extra_conf={'DEFAULT': {'enabled_backends': 'fs:file, fs2:file'},
                    'fs2': {'filesystem_store_datadir': str(second)}})
    try:
        server.start()
        yield server, str(second)
    finally:
        server.stop()


def _stored(directory, image_id):
    [name] = [n for n in os.listdir(directory) if n.startswith(image_id)]
    return os.path.join(directory, name)


def _hashes(path):
    md5 = hashlib.md5(usedforsecurity=False)
    sha512 = hashlib.sha512()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            md5.update(chunk)
            sha512.update(chunk)
    return md5.hexdigest(), sha512.hexdigest()


@pytest.mark.parametrize('fmt', ['qcow2', 'vmdk'])
def test_converted_image_in_two_stores(two_stores, tmp_path, fmt):
    server, second = two_stores
    source = imagefactory.make_image(tmp_path, fmt)
    client = server.client()
    image = client.create_image(fmt)
    client.stage(image['id'], source)
    client.import_image(image['id'], 'glance-direct', stores=['fs', 'fs2'])
    image, task = client.wait_for_import(image['id'], timeout=300)
    assert task['status'] == 'success', task.get('message')
    assert image['status'] == 'active'
    assert sorted(image['stores'].split(',')) == ['fs', 'fs2']
    assert image['disk_format'] == 'raw'
    first = _stored(server.store_dir, image['id'])
    other = _stored(second, image['id'])
    # Both stores hold the converted image, and the image's size and
    # hashes, which Glance checks against each upload, are its own.
    md5, sha512 = _hashes(first)
    assert _hashes(other) == (md5, sha512)
    assert image['size'] == os.path.getsize(first) == os.path.getsize(other)
    assert image['checksum'] == md5
    assert (image['os_hash_algo'], image['os_hash_value']) == (
        'sha512', sha512)
    assert imagefactory.compare(first, 'raw', source, fmt)
    client.delete_image(image['id'])
