import struct

import pytest

from glance_convert.guest import filesystems
from glance_convert.guest import reader


def fat_boot(total_sectors, per_cluster=4, fat_sectors=32, root=512,
             fat32=False):
    head = bytearray(4096)
    head[0] = 0xEB
    struct.pack_into('<HBHBHHBHHHII', head, 11, 512, per_cluster,
                     32 if fat32 else 1, 2, 0 if fat32 else root,
                     0 if total_sectors > 0xFFFF else total_sectors, 0xF8,
                     0 if fat32 else fat_sectors, 32, 64, 0,
                     total_sectors if total_sectors > 0xFFFF else 0)
    if fat32:
        struct.pack_into('<II', head, 36, fat_sectors, 0)
        struct.pack_into('<I', head, 44, 2)
        head[71:82] = b'ESP        '
    else:
        head[43:54] = b'EFI        '
    head[510:512] = b'\x55\xaa'
    return bytes(head)


def ext_sb(compat=0, incompat=0, ro_compat=0):
    head = bytearray(4096)
    sb = bytearray(1024)
    struct.pack_into('<H', sb, 56, 0xEF53)
    struct.pack_into('<III', sb, 92, compat, incompat, ro_compat)
    sb[120:124] = b'root'
    head[1024:2048] = sb
    return bytes(head)


def probe(data):
    return filesystems.probe(reader.BytesReader(data), 0, len(data))


@pytest.mark.parametrize('boot,kind', [
    (fat_boot(8000, per_cluster=4, fat_sectors=12), filesystems.FAT12),
    (fat_boot(65536, per_cluster=1, fat_sectors=256), filesystems.FAT16),
    (fat_boot(1048576, per_cluster=8, fat_sectors=1024, fat32=True),
     filesystems.FAT32),
], ids=['fat12', 'fat16', 'fat32'])
def test_fat_types_by_count_of_clusters(boot, kind):
    assert probe(boot).kind == kind


@pytest.mark.parametrize('features,kind', [
    ({}, filesystems.EXT2),
    ({'compat': 0x4}, filesystems.EXT3),
    ({'compat': 0x4, 'incompat': 0x40 | 0x200}, filesystems.EXT4),
    ({'ro_compat': 0x400}, filesystems.EXT4),
])
def test_ext_versions_by_features(features, kind):
    found = probe(ext_sb(**features))
    assert found.kind == kind
    assert found.label == 'root'


def test_ext_journal_device_is_not_a_filesystem():
    assert probe(ext_sb(incompat=0x8)) is None


def test_ntfs_xfs_btrfs():
    ntfs = bytearray(4096)
    ntfs[3:11] = b'NTFS    '
    assert probe(bytes(ntfs)).kind == filesystems.NTFS
    assert probe(b'XFSB' + bytes(4092)).kind == filesystems.XFS
    btrfs = bytearray(65536 + 8192)
    btrfs[65536 + 64:65536 + 72] = b'_BHRfS_M'
    assert probe(bytes(btrfs)).kind == filesystems.BTRFS


def test_nothing_recognised():
    assert probe(bytes(70000)) is None
    # A BPB with a non power of two sectors per cluster is no FAT.
    assert probe(fat_boot(8000, per_cluster=3)) is None
