"""OVAs made with the ``tar`` command around real qemu-img disks."""

import os
import subprocess

import pytest

from glance_convert import errors
from glance_convert.pipeline import conversion
from glance_convert.pipeline.containers import ova
from tests import hostile_corpus
from tests import imagefactory
from tests.unit.pipeline.test_ova import ovf_text

MiB = 1024 * 1024
IMAGE_ID = '7d0c3a7e-2222-4333-8444-555566667777'


@pytest.fixture
def stream_vmdk(tmp_path):
    return imagefactory.make_image(
        tmp_path, 'vmdk', options={'subformat': 'streamOptimized'})


def test_tar_made_ova_converts_to_raw(tmp_path, stream_vmdk, qemu_tools):
    reference = imagefactory.make_image(tmp_path, 'raw', name='ref.raw')
    src = imagefactory.make_ova(tmp_path, ovf_text(
        size=os.path.getsize(stream_vmdk), capacity='4'), stream_vmdk)
    work = tmp_path / 'work'
    work.mkdir()
    disk = str(work / (IMAGE_ID + '.glance-convert.ova-disk'))

    app = ova.read(src)
    digest = ova.extract(src, app, disk).result()
    ova.check_disk(disk, app, hostile_corpus.pipeline_settings('raw').policy)
    result = conversion.convert_image(
        disk, app.disk.disk_format, image_id=IMAGE_ID, work_dir=str(work),
        settings=hostile_corpus.pipeline_settings('raw'))

    assert digest == imagefactory.sha256_of(src)
    assert imagefactory.compare(result.path, 'raw', reference, 'raw')
    assert app.hints.firmware == 'uefi'


def _refusal(tmp_path, src):
    """Why the extracted disk of ``src`` is refused (it must be)."""
    disk = str(tmp_path / 'disk')
    app = ova.read(src)
    ova.extract(src, app, disk).result()
    with pytest.raises(errors.ImageRejected) as exc:
        ova.check_disk(disk, app,
                       hostile_corpus.pipeline_settings('raw').policy)
    return str(exc.value)


def test_ovf_lying_about_the_disk_format_is_refused(tmp_path, qemu_tools):
    qcow2 = imagefactory.make_image(tmp_path, 'qcow2')
    src = imagefactory.make_ova(tmp_path, ovf_text(), qcow2)
    assert _refusal(tmp_path, src) == (
        'Image rejected: the OVF says the disk is in vmdk format, but the '
        'data is not')


def test_ovf_lying_about_the_capacity_is_refused(tmp_path, stream_vmdk,
                                                 qemu_tools):
    src = imagefactory.make_ova(tmp_path, ovf_text(capacity='8'), stream_vmdk)
    assert 'the OVF says the disk holds %d bytes, but the disk image holds ' \
        '%d' % (8 * MiB, 4 * MiB) in _refusal(tmp_path, src)


def test_symlink_made_by_tar_is_refused(tmp_path):
    os.symlink('/etc/passwd', tmp_path / 'disk1.vmdk')
    (tmp_path / 'vm.ovf').write_bytes(ovf_text())
    out = str(tmp_path / 'link.ova')
    subprocess.run(['tar', '-cf', out, '-C', str(tmp_path), 'vm.ovf',
                    'disk1.vmdk'], check=True)
    with pytest.raises(errors.ImageRejected) as exc:
        ova.read(out)
    assert "a link ('disk1.vmdk')" in str(exc.value)
