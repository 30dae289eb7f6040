"""When the upload's SHA-256 is waited for: only where it is needed.

The hash runs in a second thread from the bytes the unpacking reads.
Without a checksum from the user, nothing waits for it before the
conversion: where hashing is slower than unpacking (an OVA is only
copied; zstd decompresses faster than SHA-256 without SHA instructions)
waiting would add its time to every import.  With a checksum, it is
checked before the disk is handed on.
"""

import gzip
import hashlib
import os
import threading

import pytest

from glance_convert import errors
from glance_convert.pipeline import containers
from glance_convert.pipeline import inspection
from glance_convert.pipeline import upload_hash
from tests import imagefactory
from tests.unit.pipeline.test_ova import ovf_text

IMAGE_ID = '3b9d2f60-1111-4222-8333-444455556666'
POLICY = inspection.Policy(max_virtual_size=64 * 1024 * 1024)


class _GatedSha:
    """hashlib.sha256 that cannot hash until the test opens the gate."""

    def __init__(self, gate, real=hashlib.sha256):
        self._sha = real()
        self._gate = gate

    def update(self, data):
        assert self._gate.wait(30), 'the gate was never opened'
        self._sha.update(data)

    def hexdigest(self):
        return self._sha.hexdigest()


@pytest.fixture
def gate(monkeypatch):
    event = threading.Event()
    monkeypatch.setattr(upload_hash.hashlib, 'sha256',
                        lambda: _GatedSha(event))
    yield event
    event.set()   # never leave a hash thread waiting


@pytest.fixture(params=['compressed', 'ova'])
def upload(request, tmp_path, qemu_tools):
    """(path, container_format, disk_format) of a real upload."""
    if request.param == 'compressed':
        raw = imagefactory.make_image(tmp_path, 'raw', name='disk.raw')
        path = tmp_path / 'up.gz'
        with open(raw, 'rb') as f:
            path.write_bytes(gzip.compress(f.read()))
        return str(path), 'compressed', 'raw'
    vmdk = imagefactory.make_image(
        tmp_path, 'vmdk', options={'subformat': 'streamOptimized'})
    path = imagefactory.make_ova(
        tmp_path, ovf_text(size=os.path.getsize(vmdk), capacity='4'), vmdk)
    return path, 'ova', 'vmdk'


def _open(upload, work, properties=None):
    path, container, fmt = upload
    return containers.opened(
        path, container_format=container, disk_format=fmt,
        properties=properties or {}, image_id=IMAGE_ID, work_dir=str(work),
        policy=POLICY)


def _left(work):
    return [n for n in os.listdir(work) if '.glance-convert.' in n]


def test_without_a_checksum_the_disk_comes_before_the_hash(
        tmp_path, gate, upload):
    work = tmp_path / 'work'
    work.mkdir()
    with _open(upload, work) as disk:
        # Unpacked and handed on while not one byte could be hashed.
        assert os.path.getsize(disk.path) > 0 and not gate.is_set()
        gate.set()
        assert disk.source_sha256() == imagefactory.sha256_of(upload[0])
    assert _left(work) == []


def test_with_a_checksum_it_is_checked_before_the_disk(
        tmp_path, gate, upload):
    work = tmp_path / 'work'
    work.mkdir()
    timer = threading.Timer(0.2, gate.set)
    timer.start()
    reached = []
    with pytest.raises(errors.ImageRejected) as exc:
        with _open(upload, work, {upload_hash.SOURCE_SHA256: 'e' * 64}):
            reached.append(True)
    timer.join()
    digest = imagefactory.sha256_of(upload[0])
    assert 'the SHA-256 of the upload is %s' % digest in str(exc.value)
    assert reached == [] and _left(work) == []
