"""Guest disks made with the installers' tools get the right properties.

Each disk is read as raw and, converted by the real qemu-img, through
the confined ``qemu-img dd`` (:mod:`glance_convert.pipeline.guest_view`).
"""

import os
import subprocess

import pytest

from glance_convert.guest import decide
from glance_convert.guest import disk
from glance_convert.guest import filesystems
from glance_convert.guest import reader
from glance_convert.pipeline import guest_view
from glance_convert.pipeline import qemu_img
from tests import guestdisks

WINDOWS_DEVICES = {'hw_disk_bus': 'sata', 'hw_vif_model': 'e1000'}
EXPECTED = {
    'windows_uefi': dict({'hw_firmware_type': 'uefi',
                          'hw_machine_type': 'q35', 'os_type': 'windows',
                          'os_distro': 'windows'}, **WINDOWS_DEVICES),
    'windows_bios': dict({'hw_firmware_type': 'bios',
                          'os_type': 'windows', 'os_distro': 'windows'},
                         **WINDOWS_DEVICES),
    'linux_uefi': {'hw_firmware_type': 'uefi', 'hw_machine_type': 'q35',
                   'os_type': 'linux', 'os_distro': 'debian',
                   'os_version': '12'},
    'linux_bios': {'hw_firmware_type': 'bios', 'os_type': 'linux',
                   'os_distro': 'debian', 'os_version': '12'},
    'linux_bios_mbr': {'hw_firmware_type': 'bios', 'os_type': 'linux',
                       'os_distro': 'debian', 'os_version': '12'},
}


def build(name, path, workdir):
    if name == 'linux_bios_mbr':
        return guestdisks.linux_bios(path, workdir, label='msdos')
    return getattr(guestdisks, name)(path, workdir)


@pytest.fixture(scope='module')
def disks(tmp_path_factory):
    workdir = tmp_path_factory.mktemp('guestdisks')
    return {name: build(name, str(workdir / (name + '.raw')), str(workdir))
            for name in EXPECTED}


def read_raw(path):
    with reader.FileReader(path) as raw:
        return disk.read_disk(raw)


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_raw_disk(disks, name):
    facts = read_raw(disks[name])
    assert facts.complete, facts.notes
    decision = decide.decide(facts, None, source_format='vmdk')
    assert decision.properties == EXPECTED[name]


def test_record_names_what_was_found_and_where(disks):
    record = decide.decide(read_raw(disks['linux_uefi']), None,
                           source_format='qcow2').record
    assert record.startswith('gpt, esp, ext4, EFI/BOOT/BOOTX64.EFI')
    assert 'os-release in partition 2 (ext4) /etc/os-release' in record
    assert 'firmware from the partition table' in record


@pytest.mark.parametrize('distro,expected', [
    ('ubuntu', ('ubuntu', '22.04')), ('fedora', ('fedora', '39')),
    ('almalinux', (None, None))])
def test_distributions(tmp_path, distro, expected):
    path = guestdisks.linux_uefi(str(tmp_path / 'disk.raw'), str(tmp_path),
                                 distro=distro)
    props = decide.decide(read_raw(path), None,
                          source_format='qcow2').properties
    assert (props.get('os_distro'), props.get('os_version')) == expected
    assert props['os_type'] == 'linux'


@pytest.mark.parametrize('fmt,options', [
    ('qcow2', []), ('vmdk', []),
    ('vmdk', ['-o', 'subformat=streamOptimized']), ('vhdx', []),
    ('vpc', [])], ids=['qcow2', 'vmdk', 'vmdk-stream', 'vhdx', 'vhd'])
@pytest.mark.parametrize('name', ['windows_uefi', 'linux_uefi'])
def test_converted_image_read_through_qemu_img(disks, tmp_path, fmt,
                                               options, name):
    image = str(tmp_path / ('disk.' + fmt))
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', fmt]
                   + options + [disks[name], image], check=True)
    size = qemu_img.info(image, fmt, qemu_img.Limits())['virtual-size']
    scratch = tmp_path / 'scratch'
    scratch.mkdir()
    view = guest_view.ImageReader(image, fmt, size,
                                  qemu_img.Limits(timeout=60),
                                  str(scratch))
    facts = disk.read_disk(view)
    assert facts.complete, facts.notes
    assert decide.decide(facts, None, source_format='vhdx').properties == \
        EXPECTED[name]
    assert facts == read_raw(disks[name])
    assert 0 < view.runs <= 8
    assert os.listdir(scratch) == []


def test_read_range_matches_the_raw_bytes(disks, tmp_path):
    image = str(tmp_path / 'disk.qcow2')
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2',
                    disks['linux_uefi'], image], check=True)
    with open(disks['linux_uefi'], 'rb') as f:
        f.seek(17 * 1024 * 1024)
        expected = f.read(65536)
    got = qemu_img.read_range(image, 'qcow2', 17 * 1024 * 1024, 65536,
                              qemu_img.Limits(timeout=60), str(tmp_path))
    assert got == expected and any(got)
    # The last chunk of the disk ends early, not in an error.
    size = os.path.getsize(disks['linux_uefi'])
    tail = qemu_img.read_range(image, 'qcow2', size - 65536, 65536,
                               qemu_img.Limits(timeout=60), str(tmp_path))
    assert len(tail) == 65536


@pytest.mark.parametrize('fs,options,kind', [
    ('ext2', [], filesystems.EXT2),
    ('ext3', [], filesystems.EXT3),
    ('ext4', [], filesystems.EXT4),
    ('ext4', ['-O', '^64bit,^metadata_csum', '-b', '1024'],
     filesystems.EXT4),
    ('ext4', ['-O', '^extent,^64bit'], filesystems.EXT4),
    ('ext4', ['-O', 'inline_data'], filesystems.EXT4),
])
def test_os_release_on_every_ext_flavour(tmp_path, fs, options, kind):
    tree = tmp_path / 'tree'
    (tree / 'usr/lib').mkdir(parents=True)
    (tree / 'etc').mkdir()
    (tree / 'usr/lib/os-release').write_text(
        guestdisks.OS_RELEASE['fedora'])
    os.symlink('../usr/lib/os-release', tree / 'etc/os-release')
    for n in range(300):        # a directory of several blocks
        (tree / 'etc' / ('conf-%03d' % n)).write_text('x')
    image = tmp_path / 'fs.img'
    with open(image, 'wb') as f:
        f.truncate(32 * 1024 * 1024)
    guestdisks.run('mkfs.' + fs, '-q', '-F', *options, '-d', str(tree),
                   str(image))
    with reader.FileReader(str(image)) as raw:
        facts = disk.read_disk(raw)
    assert facts.whole_disk.kind == kind
    assert facts.os_release['ID'] == 'fedora', facts.notes
    assert facts.os_release_at == 'whole disk (%s) /etc/os-release' % kind


@pytest.mark.parametrize('fs,size,kind', [
    ('xfs', 300, filesystems.XFS), ('btrfs', 128, filesystems.BTRFS),
    ('ntfs', 16, filesystems.NTFS)])
def test_other_filesystems(tmp_path, fs, size, kind):
    path = guestdisks.build(str(tmp_path / 'disk.raw'), [
        guestdisks.Part(size, guestdisks.LINUX_FS, fs)],
        workdir=str(tmp_path))
    facts = read_raw(path)
    assert [p.filesystem.kind for p in facts.partitions] == [kind]


@pytest.mark.parametrize('fat', ['12', '16', '32'])
def test_fat_sizes(tmp_path, fat):
    image = str(tmp_path / 'fat.img')
    with open(image, 'wb') as f:
        f.truncate(40 * 1024 * 1024)
    guestdisks.run('mkfs.vfat', '-F', fat, image)
    with reader.FileReader(image) as raw:
        assert disk.read_disk(raw).whole_disk.kind == 'fat' + fat


def test_a_failing_qemu_img_leaves_the_facts_incomplete(tmp_path):
    image = tmp_path / 'broken.qcow2'
    image.write_bytes(b'QFI\xfb' + bytes(4092))
    view = guest_view.ImageReader(str(image), 'qcow2', 64 * 1024 * 1024,
                                  qemu_img.Limits(timeout=60),
                                  str(tmp_path))
    facts = disk.read_disk(view)
    assert not facts.complete
    assert facts.notes[0].startswith('qemu-img could not read')
    decision = decide.decide(facts, None, source_format='qcow2')
    assert decision.properties == {}
    assert '(facts incomplete)' in decision.record
    assert os.listdir(tmp_path) == ['broken.qcow2']
