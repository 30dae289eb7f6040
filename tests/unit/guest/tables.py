"""Partition tables built byte by byte, for the parsers' unit tests."""

import struct
import uuid
import zlib

SECTOR = 512
ESP = 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b'
MSR = 'e3c9e316-0b5c-4db8-817d-f92df00215ae'
BASIC_DATA = 'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7'
BIOS_BOOT = '21686148-6449-6e6f-744e-656564454649'
LINUX = '0fc63daf-8483-4772-8e79-3d69d8477de4'


def mbr_entry(ptype, lba, count, active=False):
    return struct.pack('<B3xB3xII', 0x80 if active else 0, ptype, lba,
                       count)


def sector_with(entries):
    """A boot sector (MBR or EBR) holding up to four entries."""
    data = bytearray(SECTOR)
    for index, entry in enumerate(entries):
        data[446 + 16 * index:462 + 16 * index] = entry
    data[510:512] = b'\x55\xaa'
    return bytes(data)


def disk(size, pieces):
    """``size`` bytes with ``pieces`` ({offset: bytes}) written in."""
    data = bytearray(size)
    for offset, piece in pieces.items():
        data[offset:offset + len(piece)] = piece
    return bytes(data)


def gpt(size, parts, *, count=128, entry_size=128, break_header=False,
        break_entries=False, claim_count=None):
    """A disk of ``size`` bytes with a protective MBR and a GPT.

    ``parts``: (type guid, first lba, last lba).  ``claim_count`` makes
    the header claim another entry count than the array holds.
    """
    last_lba = size // SECTOR - 1
    array = bytearray(count * entry_size)
    for index, (type_guid, first, last) in enumerate(parts):
        entry = (uuid.UUID(type_guid).bytes_le + uuid.uuid4().bytes_le
                 + struct.pack('<QQQ', first, last, 0))
        array[index * entry_size:index * entry_size + len(entry)] = entry
    entries_crc = zlib.crc32(bytes(array))
    if break_entries:
        entries_crc ^= 1
    header = bytearray(92)
    struct.pack_into('<8sIIIIQQQQ16sQIII', header, 0, b'EFI PART',
                     0x10000, 92, 0, 0, 1, last_lba, 34, last_lba - 33,
                     uuid.uuid4().bytes_le, 2,
                     claim_count if claim_count is not None else count,
                     entry_size, entries_crc)
    crc = zlib.crc32(bytes(header))
    if break_header:
        crc ^= 1
    struct.pack_into('<I', header, 16, crc)
    protective = sector_with([mbr_entry(0xEE, 1, last_lba)])
    return disk(size, {0: protective, SECTOR: bytes(header),
                       2 * SECTOR: bytes(array)})
