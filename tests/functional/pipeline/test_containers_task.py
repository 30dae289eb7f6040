"""Compressed, OVA, signed and checksummed uploads through the task."""

import os
import subprocess

import pytest
from taskflow.types import failure

from glance_convert import errors
from glance_convert.pipeline import upload_hash
from tests import fakes
from tests import imagefactory
from tests.functional.pipeline.test_compressed_images import compress
from tests.unit.pipeline import test_ova

SHA = upload_hash.SOURCE_SHA256


@pytest.fixture
def staging(tmp_path):
    d = tmp_path / 'staging'
    d.mkdir()
    return d


def stage_compressed(staging, image, fmt, kind):
    inner = imagefactory.make_image(staging, fmt, name='inner.' + fmt)
    packed = compress(inner, kind)
    os.unlink(inner)
    path = os.path.join(staging, image.image_id)
    os.rename(packed, path)
    return path


def one_slot(staging):
    """One conversion slot: decompression and conversion must share it."""
    return fakes.make_workspace(staging, max_concurrent=1)


def left_over(staging):
    return sorted(n for n in os.listdir(staging)
                  if not n.startswith('glance-convert-'))


@pytest.mark.parametrize('fmt,kind', [('qcow2', 'xz'), ('vmdk', 'zstd'),
                                      ('raw', 'bzip2')])
def test_compressed_upload_is_stored_bare(staging, tmp_path, qemu_tools,
                                          fmt, kind):
    reference = imagefactory.make_image(tmp_path, 'raw', name='ref.raw')
    image = fakes.FakeImage(fmt, container_format='compressed')
    src = stage_compressed(staging, image, fmt, kind)
    published = imagefactory.sha256_of(src)
    image.extra_properties[SHA] = published
    task, _ = fakes.make_task(image, staging, target='raw',
                              workspace=one_slot(staging))

    out = task.execute('file://' + src)[len('file://'):]

    assert imagefactory.compare(out, 'raw', reference, 'raw')
    assert (image.disk_format, image.container_format) == ('raw', 'bare')
    assert image.size == os.path.getsize(out)
    assert image.extra_properties[SHA] == published
    assert not os.path.exists(src)
    assert left_over(staging) == [os.path.basename(out)]


def test_checksum_mismatch_is_refused_and_reverted(staging, qemu_tools):
    image = fakes.FakeImage('qcow2', container_format='compressed')
    src = stage_compressed(staging, image, 'qcow2', 'gzip')
    image.extra_properties[SHA] = '0' * 64
    task, _ = fakes.make_task(image, staging, target='raw',
                              workspace=one_slot(staging))

    actual = imagefactory.sha256_of(src)
    with pytest.raises(errors.ImageRejected) as exc:
        task.execute('file://' + src)
    task.revert(result=failure.Failure.from_exception(exc.value))

    assert str(exc.value).startswith(
        'Image rejected: the SHA-256 of the upload is %s, not %s'
        % (actual, '0' * 64))
    assert image.status == 'queued'
    assert image.container_format == 'compressed'
    assert left_over(staging) == []


def test_bare_upload_checksum_is_checked_when_given(staging, qemu_tools):
    # Without a checksum to check, a bare upload is not read twice.
    image = fakes.FakeImage('qcow2')
    src = imagefactory.make_image(staging, 'qcow2', name=image.image_id)
    task, _ = fakes.make_task(image, staging, target='raw')
    out = task.execute('file://' + src)[len('file://'):]
    assert SHA not in image.extra_properties
    os.unlink(out)

    image = fakes.FakeImage('qcow2')
    src = imagefactory.make_image(staging, 'qcow2', name=image.image_id)
    digest = imagefactory.sha256_of(src)
    image.extra_properties[SHA] = digest.upper()
    task, _ = fakes.make_task(image, staging, target='raw')
    out = task.execute('file://' + src)[len('file://'):]
    assert image.extra_properties[SHA] == digest

    image = fakes.FakeImage('qcow2')
    src = imagefactory.make_image(staging, 'qcow2', name=image.image_id)
    image.extra_properties[SHA] = 'a' * 64
    task, _ = fakes.make_task(image, staging, target='raw')
    with pytest.raises(errors.ImageRejected) as exc:
        task.execute('file://' + src)
    assert 'not %s as the property' % ('a' * 64) in str(exc.value)
    # Nothing converted was left for the store upload.
    assert sorted(os.listdir(staging)) == sorted(
        [os.path.basename(out), image.image_id])


def test_ova_upload_is_converted_with_ovf_properties(staging, tmp_path,
                                                     qemu_tools):
    reference = imagefactory.make_image(tmp_path, 'raw', name='ref.raw')
    build = tmp_path / 'build'
    build.mkdir()
    disk = imagefactory.make_image(
        build, 'vmdk', name='disk1.vmdk',
        options={'subformat': 'streamOptimized'})
    (build / 'vm.ovf').write_bytes(test_ova.ovf_text(
        size=os.path.getsize(disk)))
    image = fakes.FakeImage('vmdk', container_format='ova')
    src = os.path.join(staging, image.image_id)
    subprocess.run(['tar', '-cf', src, '-C', str(build), 'vm.ovf',
                    'disk1.vmdk'], check=True)
    digest = imagefactory.sha256_of(src)
    task, _ = fakes.make_task(image, staging, target='raw',
                              workspace=one_slot(staging))

    out = task.execute('file://' + src)[len('file://'):]

    assert imagefactory.compare(out, 'raw', reference, 'raw')
    assert (image.disk_format, image.container_format) == ('raw', 'bare')
    props = image.extra_properties
    assert props[SHA] == digest
    assert props['hw_firmware_type'] == 'uefi'
    assert props['glance_convert_ovf_memory_mb'] == '2048'
    assert left_over(staging) == [os.path.basename(out)]


def test_signed_image_refused_by_default_or_passed_through(
        staging, qemu_tools):
    image = fakes.FakeImage('qcow2')
    src = imagefactory.make_image(staging, 'qcow2', name=image.image_id)
    image.extra_properties['img_signature'] = 'c2lnbmF0dXJl'
    task, _ = fakes.make_task(image, staging, target='raw')
    with pytest.raises(errors.ImageRejected) as exc:
        task.execute('file://' + src)
    assert 'would invalidate the signature' in str(exc.value)

    task, _ = fakes.make_task(image, staging, target='raw',
                              signed_images='passthrough')
    assert task.execute('file://' + src) == 'file://' + src
    assert image.disk_format == 'qcow2'


def test_compressed_image_kept_as_uploaded_when_asked(staging, qemu_tools):
    # Cinder's compressed volume images: unpacked by default, stored as
    # uploaded with compressed_images = keep.
    image = fakes.FakeImage('qcow2', container_format='compressed')
    src = stage_compressed(staging, image, 'qcow2', 'gzip')
    with open(src, 'rb') as f:
        uploaded = f.read()
    task, _ = fakes.make_task(image, staging, target='raw',
                              compressed_images='keep')
    assert task.execute('file://' + src) == 'file://' + src
    assert (image.disk_format, image.container_format) == (
        'qcow2', 'compressed')
    with open(src, 'rb') as f:
        assert f.read() == uploaded
    assert left_over(staging) == [image.image_id]

    task, _ = fakes.make_task(image, staging, target='raw')
    out = task.execute('file://' + src)[len('file://'):]
    assert (image.disk_format, image.container_format) == ('raw', 'bare')
    assert os.path.exists(out) and not os.path.exists(src)


@pytest.mark.parametrize('fmt,kind', [('qcow2', 'gzip'), ('raw', 'xz')])
def test_compressed_upload_declared_bare_is_unpacked(staging, tmp_path,
                                                     qemu_tools, fmt, kind):
    reference = imagefactory.make_image(tmp_path, 'raw', name='ref.raw')
    image = fakes.FakeImage(fmt, container_format='bare')
    src = stage_compressed(staging, image, fmt, kind)
    task, _ = fakes.make_task(image, staging, target='raw')
    out = task.execute('file://' + src)[len('file://'):]
    assert imagefactory.compare(out, 'raw', reference, 'raw')
    assert (image.disk_format, image.container_format) == ('raw', 'bare')
    assert left_over(staging) == [os.path.basename(out)]


def test_compressed_upload_declared_bare_refused_when_asked(staging,
                                                            qemu_tools):
    image = fakes.FakeImage('qcow2', container_format='bare')
    src = stage_compressed(staging, image, 'qcow2', 'zstd')
    task, _ = fakes.make_task(image, staging, target='raw',
                              bare_compression='refuse')
    with pytest.raises(errors.ImageRejected) as exc:
        task.execute('file://' + src)
    assert str(exc.value) == ('Image rejected: this upload is '
                              'zstd-compressed: set '
                              'container_format=compressed')
    assert left_over(staging) == [image.image_id]


def test_raw_disk_starting_with_a_magic_number_is_not_misread(
        staging, tmp_path, qemu_tools):
    image = fakes.FakeImage('raw', container_format='bare')
    src = os.path.join(staging, image.image_id)
    disk = b'\x1f\x8b\x08\x00' + os.urandom(1020) + bytes(1 << 20)
    with open(src, 'wb') as f:
        f.write(disk)
    copy = tmp_path / 'copy.raw'
    copy.write_bytes(disk)
    task, _ = fakes.make_task(image, staging, target='qcow2')
    out = task.execute('file://' + src)[len('file://'):]
    # Converted as the raw disk it is, first bytes included.
    assert imagefactory.compare(out, 'qcow2', str(copy), 'raw')
