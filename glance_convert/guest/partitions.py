"""MBR and GPT partition tables, read defensively.

Only what decides how a guest boots is kept: where each partition is and
what kind it is.  A hostile table costs nothing and hurts nothing:
entries past the end of the disk or overlapping an earlier entry are
dropped with a note, an extended-partition chain that loops or runs long
is cut, a GPT's entry count and size are bounded and its header and
entry array must match their CRC32.
"""

import dataclasses
import struct
import uuid
import zlib

from glance_convert.guest import reader as guest_reader

#: Most GPT entries read (the spec's minimum array holds 128; real tools
#: never write more than a few hundred) and largest entry size.
MAX_GPT_ENTRIES = 256
MAX_GPT_ENTRY_SIZE = 1024
#: Most logical partitions followed in an MBR's extended chain.
MAX_LOGICAL = 64
#: Sector sizes a GPT header is looked for at (LBA 1).
SECTOR_SIZES = (512, 4096)

# Partition kinds, named as the record property shows them.
ESP = 'esp'
BIOS_BOOT = 'bios-boot'
MSR = 'msr'
BASIC_DATA = 'basic-data'
WINDOWS_RECOVERY = 'windows-recovery'
LINUX = 'linux'
LINUX_ROOT = 'linux-root'
LINUX_SWAP = 'linux-swap'
LINUX_LVM = 'linux-lvm'
EXTENDED = 'extended'
PROTECTIVE = 'protective'
OTHER = 'other'

_GPT_KINDS = {
    'c12a7328-f81f-11d2-ba4b-00a0c93ec93b': ESP,
    '21686148-6449-6e6f-744e-656564454649': BIOS_BOOT,
    'e3c9e316-0b5c-4db8-817d-f92df00215ae': MSR,
    'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7': BASIC_DATA,
    'de94bba4-06d1-4d40-a16a-bfd50179d6ac': WINDOWS_RECOVERY,
    '0fc63daf-8483-4772-8e79-3d69d8477de4': LINUX,
    '4f68bce3-e8cd-4db1-96e7-fbcaf984b709': LINUX_ROOT,     # x86-64
    '44479540-f297-41b2-9af7-d131d5f0458a': LINUX_ROOT,     # x86
    'b921b045-1df0-41c3-af44-4c6f280d3fae': LINUX_ROOT,     # arm64
    '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f': LINUX_SWAP,
    'e6d6d379-f507-44c2-a23c-238f2a3df928': LINUX_LVM,
}

_MBR_KINDS = {
    0xEF: ESP,
    0xEE: PROTECTIVE,
    0x05: EXTENDED, 0x0F: EXTENDED, 0x85: EXTENDED,
    # FAT and NTFS: what Windows and DOS call their data partitions.
    0x01: BASIC_DATA, 0x04: BASIC_DATA, 0x06: BASIC_DATA,
    0x07: BASIC_DATA, 0x0B: BASIC_DATA, 0x0C: BASIC_DATA,
    0x0E: BASIC_DATA,
    0x27: WINDOWS_RECOVERY,
    0x83: LINUX,
    0x82: LINUX_SWAP,
    0x8E: LINUX_LVM,
}


@dataclasses.dataclass(frozen=True)
class Partition:
    number: int        # 1-based, as the guest's tools number them
    start: int         # bytes from the start of the disk
    size: int          # bytes
    kind: str
    type_id: str       # GPT type GUID or MBR type byte ("0x83")
    active: bool = False   # MBR boot flag


@dataclasses.dataclass(frozen=True)
class Table:
    #: 'gpt', 'mbr' or None (no partition table).
    scheme: str | None
    partitions: tuple[Partition, ...] = ()
    sector_size: int = 512
    #: What was dropped or distrusted, for the record and the log.
    notes: tuple[str, ...] = ()

    def of_kind(self, *kinds: str) -> list[Partition]:
        return [p for p in self.partitions if p.kind in kinds]


class _Collector:
    """Accepts partitions inside the disk that overlap no earlier one."""

    def __init__(self, disk_size: int):
        self.disk_size = disk_size
        self.accepted: list[Partition] = []
        self.notes: list[str] = []

    def add(self, part: Partition,
            container: Partition | None = None) -> None:
        """Keep ``part`` if sane; a logical partition must lie inside
        its ``container`` (the extended partition) and may overlap it."""
        end = part.start + part.size
        lo, hi = (0, self.disk_size) if container is None else (
            container.start, container.start + container.size)
        if part.size <= 0 or part.start <= lo or end > hi:
            self.notes.append('partition %d outside the %s' % (
                part.number, 'disk' if container is None else
                'extended partition'))
            return
        for other in self.accepted:
            if other is container:
                continue
            if part.start < other.start + other.size and \
                    other.start < end:
                self.notes.append('partition %d overlaps partition %d'
                                  % (part.number, other.number))
                return
        self.accepted.append(part)


def read_table(reader: guest_reader.Reader) -> Table:
    """The partition table of a disk; ``Table(None)`` when it has none."""
    mbr = guest_reader.exact(reader, 0, 512)
    if mbr is None or mbr[510:512] != b'\x55\xaa':
        return Table(None)
    primaries = [struct.unpack_from('<B3xB3xII', mbr, 446 + 16 * i)
                 for i in range(4)]
    if any(ptype == 0xEE for _flag, ptype, _s, _n in primaries):
        for sector in SECTOR_SIZES:
            table = _read_gpt(reader, sector)
            if table is not None:
                return table
        return Table('mbr', notes=('protective MBR without a valid GPT',))
    if _looks_like_boot_sector(mbr, primaries) or \
            not any(ptype for _f, ptype, _s, _n in primaries):
        return Table(None)
    return _read_mbr(reader, mbr, primaries)


def _looks_like_boot_sector(sector, primaries) -> bool:
    """A filesystem's boot sector on a whole disk also ends in 55 AA."""
    if sector[3:11] in (b'NTFS    ', b'EXFAT   '):
        return True
    # A partition entry's boot flag is 0x00 or 0x80; FAT's BPB puts other
    # bytes there.
    return any(flag not in (0, 0x80) for flag, _t, _s, _n in primaries)


def _read_mbr(reader, mbr, primaries) -> Table:
    found = _Collector(reader.size)
    extended = None
    for index, (flag, ptype, lba, count) in enumerate(primaries, 1):
        if ptype == 0 or count == 0:
            continue
        kind = _MBR_KINDS.get(ptype, OTHER)
        part = Partition(index, lba * 512, count * 512, kind,
                         '0x%02x' % ptype, active=flag == 0x80)
        found.add(part)
        if kind == EXTENDED and extended is None and part in found.accepted:
            extended = part
    if extended is not None:
        _read_logical(reader, extended, found)
    return Table('mbr', tuple(found.accepted), 512, tuple(found.notes))


def _read_logical(reader, extended: Partition, found: _Collector, *,
                  max_logical: int | None = MAX_LOGICAL,
                  remember: bool = True) -> None:
    """Follow the EBR chain of an extended partition, bounded.

    ``max_logical`` and ``remember`` (the visited set) are the defences;
    tests turn them off to show the attack.
    """
    base = extended.start
    ebr = base
    seen: set[int] = set()
    number = 5
    while True:
        if remember and ebr in seen:
            found.notes.append('extended partition chain loops')
            return
        if max_logical is not None and number - 5 >= max_logical:
            found.notes.append('more than %d logical partitions'
                               % max_logical)
            return
        seen.add(ebr)
        sector = guest_reader.exact(reader, ebr, 512)
        if sector is None or sector[510:512] != b'\x55\xaa':
            return
        flag, ptype, lba, count = struct.unpack_from('<B3xB3xII', sector,
                                                     446)
        _f2, next_type, next_lba, _n2 = struct.unpack_from('<B3xB3xII',
                                                           sector, 462)
        if ptype and count:
            found.add(Partition(number, ebr + lba * 512, count * 512,
                                _MBR_KINDS.get(ptype, OTHER),
                                '0x%02x' % ptype, active=flag == 0x80),
                      extended)
        number += 1
        if next_type not in (0x05, 0x0F, 0x85) or next_lba == 0:
            return
        ebr = base + next_lba * 512


def _read_gpt(reader, sector: int) -> Table | None:
    header = guest_reader.exact(reader, sector, sector)
    if header is None or header[:8] != b'EFI PART':
        return None
    (header_size, header_crc, _my_lba, _alt_lba, first_usable,
     last_usable, entries_lba, count, entry_size,
     entries_crc) = struct.unpack_from('<12xII4xQQQQ16xQIII', header)
    if not 92 <= header_size <= sector:
        return None
    check = bytearray(header[:header_size])
    check[16:20] = b'\0\0\0\0'
    if zlib.crc32(check) != header_crc:
        return None
    notes = []
    if entry_size < 128 or entry_size > MAX_GPT_ENTRY_SIZE or \
            entry_size % 8:
        return Table('gpt', (), sector, ('GPT entry size %d refused'
                                         % entry_size,))
    if count > MAX_GPT_ENTRIES:
        # The CRC covers all the entries, so none can be trusted.
        return Table('gpt', (), sector,
                     ('GPT claims %d entries, more than %d read'
                      % (count, MAX_GPT_ENTRIES),))
    array = guest_reader.exact(reader, entries_lba * sector,
                               count * entry_size)
    if array is None or zlib.crc32(array) != entries_crc:
        return Table('gpt', (), sector,
                     ('GPT entry array missing or its CRC does not match',))
    found = _Collector(reader.size)
    for index in range(count):
        entry = array[index * entry_size:(index + 1) * entry_size]
        type_guid = uuid.UUID(bytes_le=entry[:16])
        if type_guid.int == 0:
            continue
        first, last = struct.unpack_from('<QQ', entry, 32)
        if first < first_usable or last > last_usable or last < first:
            found.notes.append('partition %d outside the usable area'
                               % (index + 1))
            continue
        found.add(Partition(index + 1, first * sector,
                            (last - first + 1) * sector,
                            _GPT_KINDS.get(str(type_guid), OTHER),
                            str(type_guid)))
    return Table('gpt', tuple(found.accepted), sector,
                 tuple(notes + found.notes))
