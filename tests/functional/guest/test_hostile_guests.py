"""Hostile guest disks, made with real tools and then corrupted.

Each case shows that the bound holds (the facts are read, or given up,
at a small cost) and that without the defence the same walk spends the
whole budget of one disk, so that the test can fail.
"""

import struct

import pytest

from glance_convert.guest import disk
from glance_convert.guest import ext
from glance_convert.guest import fat
from glance_convert.guest import filesystems
from glance_convert.guest import partitions
from glance_convert.guest import reader
from tests import guestdisks

MiB = 1024 * 1024


def esp_image(tmp_path):
    path = str(tmp_path / 'esp.img')
    guestdisks.make_fs(path, 'vfat', 16,
                       {'EFI/BOOT/BOOTX64.EFI': b'MZ loader'},
                       workdir=str(tmp_path))
    return path


def set_fat16(path, cluster, value):
    with open(path, 'r+b') as f:
        geometry = filesystems.fat_geometry(f.read(512))
        assert not geometry.fat32 and geometry.clusters >= 4085
        f.seek(geometry.fat_start + 2 * cluster)
        f.write(struct.pack('<H', value))
    return geometry


def efi_cluster(path):
    with reader.FileReader(path) as raw:
        volume = fat.FatVolume.open(raw, 0)
        return next(e for e in volume.root() if e.name == 'EFI').cluster


def test_looping_cluster_chain(tmp_path):
    path = esp_image(tmp_path)
    cluster = efi_cluster(path)
    set_fat16(path, cluster, cluster)            # EFI's chain loops
    with reader.FileReader(path) as raw:
        budgeted = reader.Budgeted(raw)
        contents = fat.esp_contents(budgeted, 0)
        assert contents.loaders == ('EFI/BOOT/BOOTX64.EFI',)
        assert 'cluster chain loops' in contents.notes
        assert budgeted.reads < 20
    # Without the visited set only the directory bound stops it; without
    # both the loop spends the budget.
    with reader.FileReader(path) as raw:
        volume = fat.FatVolume.open(reader.Budgeted(raw), 0)
        volume.remember = False
        efi = next(e for e in volume.root() if e.name == 'EFI')
        volume.listdir(efi)
        assert any('longer than' in note for note in volume.notes)


def test_looping_cluster_chain_without_any_bound(tmp_path, monkeypatch):
    path = esp_image(tmp_path)
    cluster = efi_cluster(path)
    set_fat16(path, cluster, cluster)
    monkeypatch.setattr(fat, 'MAX_DIR_BYTES', 10 ** 12)
    with reader.FileReader(path) as raw:
        volume = fat.FatVolume.open(reader.Budgeted(raw), 0)
        volume.remember = False
        efi = next(e for e in volume.root() if e.name == 'EFI')
        with pytest.raises(reader.BudgetSpent):
            volume.listdir(efi)


def test_huge_directory_chain(tmp_path, monkeypatch):
    path = esp_image(tmp_path)
    cluster = efi_cluster(path)
    with open(path, 'rb') as f:
        geometry = filesystems.fat_geometry(f.read(512))
    # EFI's chain runs through every cluster of the filesystem.
    with open(path, 'r+b') as f:
        f.seek(geometry.fat_start + 2 * cluster)
        last = geometry.clusters + 1
        f.write(b''.join(struct.pack('<H', c + 1)
                         for c in range(cluster, last)) + b'\xff\xff')
    with reader.FileReader(path) as raw:
        budgeted = reader.Budgeted(raw)
        contents = fat.esp_contents(budgeted, 0)
        assert any('longer than %d' % fat.MAX_DIR_BYTES in note
                   for note in contents.notes)
        # /EFI and /EFI/BOOT both run into the long chain.
        assert budgeted.bytes_read < 2 * fat.MAX_DIR_BYTES + 64 * 1024
    monkeypatch.setattr(fat, 'MAX_DIR_BYTES', 10 ** 12)
    with reader.FileReader(path) as raw:
        with pytest.raises(reader.BudgetSpent):
            fat.esp_contents(reader.Budgeted(raw), 0)


def ext_image(tmp_path, files=None, symlinks=None):
    path = str(tmp_path / 'root.img')
    guestdisks.make_fs(path, 'ext4', 32, files or {}, symlinks or {},
                       workdir=str(tmp_path))
    return path


def test_symlink_loop(tmp_path):
    path = ext_image(tmp_path, symlinks={'etc/os-release': 'loop',
                                         'etc/loop': 'os-release'})
    with reader.FileReader(path) as raw:
        budgeted = reader.Budgeted(raw)
        values, why = ext.os_release(budgeted, 0)
        assert values is None
        assert 'symbolic links' in why
        assert budgeted.reads < 100
    with reader.FileReader(path) as raw:
        volume = ext.ExtVolume(reader.Budgeted(raw), 0)
        with pytest.raises(reader.BudgetSpent):
            volume.lookup('/etc/os-release', max_links=10 ** 9)


def test_huge_os_release_is_not_read(tmp_path):
    path = ext_image(tmp_path, files={
        'etc/os-release': b'ID=debian\n' + b'#' * (8 * MiB)})
    with reader.FileReader(path) as raw:
        budgeted = reader.Budgeted(raw)
        values, why = ext.os_release(budgeted, 0)
        assert values is None and 'more than' in why
        assert budgeted.bytes_read < 256 * 1024
    with reader.FileReader(path) as raw:
        volume = ext.ExtVolume(reader.Budgeted(raw), 0)
        with pytest.raises(reader.BudgetSpent):
            volume.read_file(volume.lookup('/etc/os-release'), 10 ** 12)


def test_gpt_with_thousands_of_entries(tmp_path, monkeypatch):
    path = str(tmp_path / 'disk.raw')
    with open(path, 'wb') as f:
        f.truncate(64 * MiB)
    guestdisks.run('sgdisk', '-S', '32768', '-n', '1:8M:+8M', '-t',
                   '1:ef00', path)
    with reader.FileReader(path) as raw:
        facts = disk.read_disk(raw)
    assert facts.scheme == 'gpt' and facts.partitions == ()
    assert any('32768 entries' in note for note in facts.notes)
    assert facts.bytes_read < 64 * 1024
    monkeypatch.setattr(partitions, 'MAX_GPT_ENTRIES', 10 ** 6)
    with reader.FileReader(path) as raw:
        facts = disk.read_disk(raw)
    assert not facts.complete
    assert any('reading the guest disk stopped' in n for n in facts.notes)


def test_overlapping_partitions_from_parted(tmp_path):
    """Two MBR entries over the same sectors: the second is dropped."""
    path = guestdisks.linux_bios(str(tmp_path / 'disk.raw'), str(tmp_path),
                                 label='msdos')
    with open(path, 'r+b') as f:
        first = f.seek(446) and f.read(16)
        f.seek(462)
        f.write(first)
    with reader.FileReader(path) as raw:
        facts = disk.read_disk(raw)
    assert [p.partition.number for p in facts.partitions] == [1]
    assert 'partition 2 overlaps partition 1' in facts.notes
    assert facts.os_release['ID'] == 'debian'


def test_scattered_partitions_cost_a_bounded_number_of_qemu_img_runs(
        tmp_path):
    """Each of 20 partitions in a chunk of its own: reading them all
    through qemu-img would take 21 runs; it stops at MAX_RUNS."""
    from glance_convert.pipeline import guest_view
    from glance_convert.pipeline import qemu_img

    path = str(tmp_path / 'disk.raw')
    with open(path, 'wb') as f:
        f.truncate(64 * MiB)
    for number in range(1, 21):
        guestdisks.run('sgdisk', '-n', '%d:%dM:+1M' % (number, 2 * number),
                       '-t', '%d:8300' % number, path)
    image = str(tmp_path / 'disk.qcow2')
    guestdisks.run('qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', path,
                   image)

    def view(**bound):
        return guest_view.ImageReader(image, 'qcow2', 64 * MiB,
                                      qemu_img.Limits(timeout=60),
                                      str(tmp_path), **bound)

    bounded = view()
    facts = disk.read_disk(bounded)
    assert not facts.complete
    assert bounded.runs == guest_view.MAX_RUNS
    unbounded = view(max_runs=10 ** 6)
    disk.read_disk(unbounded)
    assert unbounded.runs > guest_view.MAX_RUNS


class Overlay:
    """A reader that shows ``changes`` ({offset: byte}) over a disk."""

    def __init__(self, source, changes):
        self.source = source
        self.size = source.size
        self.changes = changes

    def read(self, offset, length):
        data = bytearray(self.source.read(offset, length))
        for position, value in self.changes.items():
            if offset <= position < offset + len(data):
                data[position - offset] = value
        return bytes(data)


class Recorder:
    def __init__(self, source):
        self.source = source
        self.size = source.size
        self.ranges = []

    def read(self, offset, length):
        data = self.source.read(offset, length)
        self.ranges.append((offset, len(data)))
        return data


@pytest.mark.parametrize('layout', ['windows_uefi', 'linux_uefi',
                                    'linux_bios'])
def test_corrupted_metadata_never_escapes(tmp_path, layout):
    """Bytes that the reading of a clean disk read (tables, boot sectors,
    FAT, directories, superblock, group descriptors, inodes, extents)
    changed at random (seeded): every reading ends within the budget,
    with or without facts, and raises nothing."""
    import random

    path = getattr(guestdisks, layout)(str(tmp_path / 'disk.raw'),
                                       str(tmp_path))
    with reader.FileReader(path) as raw:
        recorder = Recorder(raw)
        clean = disk.read_disk(recorder)
        seed = random.Random(layout)
        outcomes = set()
        for _ in range(500):
            changes = {}
            for _ in range(seed.choice((1, 2, 8))):
                offset, length = seed.choice(recorder.ranges)
                changes[offset + seed.randrange(min(length, 4096))] = \
                    seed.randrange(256)
            facts = disk.read_disk(Overlay(raw, changes))
            assert facts.bytes_read <= reader.MAX_BYTES
            assert facts.reads <= reader.MAX_READS
            outcomes.add((facts.complete, facts == clean))
    # Some changes are harmless, some change the facts, none escapes.
    assert (True, True) in outcomes
    assert (True, False) in outcomes or (False, False) in outcomes
