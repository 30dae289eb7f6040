"""Which filesystem a partition holds, from its signatures.

One read of the partition's first 4 KiB tells FAT, NTFS, exFAT, ext2/3/4
and XFS apart; Btrfs keeps its superblock at 64 KiB.  ext2, ext3 and ext4
share a magic number and differ by feature flags, as the kernel and
``blkid`` tell them apart.
"""

import dataclasses
import struct

from glance_convert.guest import reader as guest_reader

FAT12 = 'fat12'
FAT16 = 'fat16'
FAT32 = 'fat32'
EXFAT = 'exfat'
NTFS = 'ntfs'
EXT2 = 'ext2'
EXT3 = 'ext3'
EXT4 = 'ext4'
XFS = 'xfs'
BTRFS = 'btrfs'
SWAP = 'swap'
LVM = 'lvm-pv'

FAT = (FAT12, FAT16, FAT32)
EXT = (EXT2, EXT3, EXT4)

_EXT3_COMPAT_JOURNAL = 0x4
# incompat: extents, 64bit, flex_bg, mmp, inline_data, csum_seed, ...
_EXT4_INCOMPAT = 0x40 | 0x80 | 0x200 | 0x100 | 0x8000 | 0x2000 | 0x400
# ro_compat: huge_file, gdt_csum, dir_nlink, extra_isize, metadata_csum
_EXT4_RO_COMPAT = 0x8 | 0x10 | 0x20 | 0x40 | 0x400
# incompat: journal device (not a filesystem of its own)
_EXT_JOURNAL_DEV = 0x8


@dataclasses.dataclass(frozen=True)
class Filesystem:
    kind: str
    label: str = ''


def probe(reader: guest_reader.Reader, start: int,
          size: int) -> Filesystem | None:
    """The filesystem at ``start`` (``size`` bytes long), or None."""
    head = reader.read(start, 4096)
    if len(head) < 512:
        return None
    if head[3:11] == b'NTFS    ':
        return Filesystem(NTFS)
    if head[3:11] == b'EXFAT   ':
        return Filesystem(EXFAT)
    if head[:4] == b'XFSB':
        label = head[108:120].split(b'\0')[0]
        return Filesystem(XFS, label.decode('latin-1'))
    found = _ext(head)
    if found is not None:
        return found
    found = _fat(head)
    if found is not None:
        return found
    if head[4086:4096] in (b'SWAPSPACE2', b'SWAP-SPACE'):
        return Filesystem(SWAP)
    if head[512:520] == b'LABELONE':
        return Filesystem(LVM)
    if size > 65536 + 4096:
        btrfs = reader.read(start + 65536, 4096)
        if btrfs[64:72] == b'_BHRfS_M':
            label = btrfs[0x12b:0x12b + 256].split(b'\0')[0]
            return Filesystem(BTRFS, label.decode('utf-8', 'replace'))
    return None


def _ext(head: bytes) -> Filesystem | None:
    if len(head) < 2048:
        return None
    sb = head[1024:2048]
    magic, = struct.unpack_from('<H', sb, 56)
    if magic != 0xEF53:
        return None
    compat, incompat, ro_compat = struct.unpack_from('<III', sb, 92)
    if incompat & _EXT_JOURNAL_DEV:
        return None
    label = sb[120:136].split(b'\0')[0].decode('utf-8', 'replace')
    if incompat & _EXT4_INCOMPAT or ro_compat & _EXT4_RO_COMPAT:
        return Filesystem(EXT4, label)
    if compat & _EXT3_COMPAT_JOURNAL:
        return Filesystem(EXT3, label)
    return Filesystem(EXT2, label)


def _fat(head: bytes) -> Filesystem | None:
    """FAT by its BPB, typed by its count of clusters (as the spec says)."""
    bpb = fat_geometry(head)
    if bpb is None:
        return None
    if bpb.fat32:
        label = head[71:82]
    else:
        label = head[43:54]
    label = label.decode('latin-1').strip()
    if bpb.fat32:
        return Filesystem(FAT32, label)
    return Filesystem(FAT12 if bpb.clusters < 4085 else FAT16, label)


@dataclasses.dataclass(frozen=True)
class FatGeometry:
    sector: int            # bytes per sector
    cluster: int           # bytes per cluster
    fat_start: int         # bytes from the filesystem's start
    fat_size: int          # bytes of one FAT
    root_start: int        # FAT12/16: the fixed root directory
    root_size: int
    data_start: int        # cluster 2
    clusters: int          # count of data clusters
    root_cluster: int      # FAT32
    fat32: bool


def fat_geometry(head: bytes) -> FatGeometry | None:
    """A FAT boot sector's layout, or None when it is not a sane BPB."""
    if len(head) < 512 or head[510:512] != b'\x55\xaa' or \
            head[0] not in (0xEB, 0xE9):
        return None
    (sector, per_cluster, reserved, fats, root_entries, total16, _media,
     fat16_size, _spt, _heads, _hidden, total32) = struct.unpack_from(
        '<HBHBHHBHHHII', head, 11)
    if sector not in (512, 1024, 2048, 4096) or per_cluster == 0 or \
            per_cluster & (per_cluster - 1) or reserved == 0 or \
            fats not in (1, 2):
        return None
    fat_sectors = fat16_size or struct.unpack_from('<I', head, 36)[0]
    total = total16 or total32
    if fat_sectors == 0 or total == 0:
        return None
    root_sectors = (root_entries * 32 + sector - 1) // sector
    data_sector = reserved + fats * fat_sectors + root_sectors
    if data_sector >= total:
        return None
    clusters = (total - data_sector) // per_cluster
    fat32 = root_entries == 0 and fat16_size == 0
    root_cluster = struct.unpack_from('<I', head, 44)[0] if fat32 else 0
    return FatGeometry(
        sector=sector, cluster=sector * per_cluster,
        fat_start=reserved * sector, fat_size=fat_sectors * sector,
        root_start=(reserved + fats * fat_sectors) * sector,
        root_size=root_sectors * sector, data_start=data_sector * sector,
        clusters=clusters, root_cluster=root_cluster, fat32=fat32)
