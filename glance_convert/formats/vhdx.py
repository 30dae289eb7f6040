"""VHDX: Hyper-V's format, with checksummed headers and a log.

oslo.utils' ``VHDXInspector`` reads only the virtual size; the parser
here reads what qemu reads and what it does not check (see
:func:`parse`).  Layout: the MS-VHDX specification and qemu's
``block/vhdx.c``.
"""

from __future__ import annotations

import array
import struct
import sys

from glance_convert import safety
from glance_convert import units
from glance_convert.formats import base
from glance_convert.formats import binary
from glance_convert.formats.base import Header
from glance_convert.formats.base import Malformed
from glance_convert.formats.crc32c import crc32c

_read = binary.read
_unpack = binary.unpack

#: The file type identifier at offset 0.
VHDX_SIGNATURE = b'vhdxfile'
_KiB, _MiB = 1024, 1024 * 1024
#: The file identifier, two headers, two region tables and reserved space.
VHDX_HEADER_AREA = _MiB
VHDX_HEADERS = (64 * _KiB, 128 * _KiB)
VHDX_HEADER_SIZE = 4 * _KiB
VHDX_REGION_TABLES = (192 * _KiB, 256 * _KiB)
VHDX_TABLE_SIZE = 64 * _KiB          # a region table, the metadata table
VHDX_MAX_ENTRIES = 2047              # in either table
VHDX_MAX_SIZE = 64 << 40             # the most the specification allows
#: BAT entries walked at most (32 MiB of BAT: 32 TiB at 8 MiB blocks);
#: beyond, only qemu checks where the blocks lie.
VHDX_MAX_BAT_WALK = 1 << 22
# Block states: payload blocks 0-3 and 6-7, sector bitmaps 0 and 6.
VHDX_FULLY_PRESENT, VHDX_PARTIALLY_PRESENT = 6, 7
_VHDX_PAYLOAD_STATES = frozenset((0, 1, 2, 3, 6, 7))
_VHDX_BITMAP_STATES = frozenset((0, 6))


def _guid(text: str) -> bytes:
    """A GUID as it is stored: the first three fields little-endian."""
    a, b, c, d, e = text.split('-')
    return (struct.pack('<IHH', int(a, 16), int(b, 16), int(c, 16))
            + bytes.fromhex(d + e))


_VHDX_BAT = _guid('2DC27766-F623-4200-9D64-115E9BFD4A08')
_VHDX_METADATA = _guid('8B7CA206-4790-4B9A-B8FE-575F050F886E')
# Metadata items: GUID -> (name, length the specification gives it).
_VHDX_FILE_PARAMETERS = _guid('CAA16737-FA36-4D43-B3B6-33F0AA44E76B')
_VHDX_VIRTUAL_DISK_SIZE = _guid('2FA54224-CD1B-4876-B211-5DBED83BF4B8')
_VHDX_PAGE83 = _guid('BECA12AB-B2E6-4523-93EF-C309E000C746')
_VHDX_LOGICAL_SECTOR = _guid('8141BF1D-A96F-4709-BA47-F233A8FAAB5F')
_VHDX_PHYSICAL_SECTOR = _guid('CDA348C7-445D-4471-9CC9-E9885251C556')
_VHDX_PARENT_LOCATOR = _guid('A8D35F2D-B30B-454D-ABF7-D3D84834AB0C')
_VHDX_ITEMS = {
    _VHDX_FILE_PARAMETERS: ('file parameters', 8),
    _VHDX_VIRTUAL_DISK_SIZE: ('virtual disk size', 8),
    _VHDX_PAGE83: ('page 83 data', 16),
    _VHDX_LOGICAL_SECTOR: ('logical sector size', 4),
    _VHDX_PHYSICAL_SECTOR: ('physical sector size', 4),
    _VHDX_PARENT_LOCATOR: ('parent locator', None),
}
_VHDX_NEEDED_ITEMS = (_VHDX_FILE_PARAMETERS, _VHDX_VIRTUAL_DISK_SIZE,
                      _VHDX_PAGE83, _VHDX_LOGICAL_SECTOR,
                      _VHDX_PHYSICAL_SECTOR)


_CRC32C_POLY = 0x82f63b78   # reflected Castagnoli polynomial


def _vhdx_checksum_ok(block: bytes) -> bool:
    """The CRC-32C at offset 4 covers the block with that field zeroed."""
    stored, = _unpack('<I', block, 4)
    return crc32c(block[:4] + b'\0\0\0\0' + block[8:]) == stored


def _vhdx_current_header(f, h: Header) -> bytes:
    """The header qemu uses: of the valid ones, the higher sequence number.

    A header is valid with its signature, checksum and version 1; one
    damaged header is legitimate (a torn update), none is not.
    """
    valid = []
    for offset in VHDX_HEADERS:
        block = _read(f, offset, VHDX_HEADER_SIZE)
        if (len(block) == VHDX_HEADER_SIZE and block[:4] == b'head'
                and _vhdx_checksum_ok(block)
                and _unpack('<H', block, 66)[0] == 1):
            valid.append((_unpack('<Q', block, 8)[0], block))
    if not valid:
        h.corrupt = 'no valid VHDX header (signature, checksum, version)'
        raise _VhdxStop()
    if len(valid) == 2 and valid[0][0] == valid[1][0] and (
            valid[0][1][:80] != valid[1][1][:80]):
        h.corrupt = 'two different VHDX headers with one sequence number'
        raise _VhdxStop()
    return max(valid, key=lambda pair: pair[0])[1]


class _VhdxStop(Exception):
    """The parser found a fault it reported in the Header; stop there."""


def _vhdx_regions(f, h: Header) -> list[tuple[bytes, int, int, bool]]:
    """The entries of region table 1 (qemu reads no other); table 2 must
    be valid and say the same, or another reader may use other regions."""
    tables = []
    for offset in VHDX_REGION_TABLES:
        block = _read(f, offset, VHDX_TABLE_SIZE)
        sig, _crc, count = _unpack('<4sII', block)
        if sig != b'regi' or not _vhdx_checksum_ok(block):
            h.corrupt = ('the VHDX region table at %d KiB has a wrong '
                         'signature or checksum' % (offset // _KiB))
            raise _VhdxStop()
        if count > VHDX_MAX_ENTRIES:
            h.corrupt = 'VHDX region table with %d entries' % count
            raise _VhdxStop()
        tables.append(block[8:16 + 32 * count])
    if tables[0] != tables[1]:
        h.corrupt = 'the two VHDX region tables differ'
        raise _VhdxStop()
    entries = []
    for index in range(len(tables[0]) // 32):
        guid, offset, length, flags = _unpack('<16sQII', tables[0],
                                              8 + 32 * index)
        entries.append((guid, offset, length, bool(flags & 1)))
    return entries


def _vhdx_place(h: Header, name: str, offset: int, length: int,
                file_size: int, taken: list) -> None:
    """A region of the file: aligned, after the header area, inside the
    file and overlapping no other (qemu checks the overlaps too)."""
    if offset % _MiB or length % _MiB or not length:
        h.corrupt = 'the VHDX %s is not aligned to 1 MiB' % name
    elif offset < VHDX_HEADER_AREA:
        h.corrupt = 'the VHDX %s overlaps the header area' % name
    elif offset + length > file_size:
        h.corrupt = 'the VHDX %s lies beyond the end of the file' % name
    elif any(offset < end and start < offset + length
             for start, end, _name in taken):
        h.corrupt = 'the VHDX %s overlaps the %s' % (name, next(
            other for start, end, other in taken
            if offset < end and start < offset + length))
    else:
        taken.append((offset, offset + length, name))
        return
    raise _VhdxStop()


def _vhdx_metadata(f, h: Header, offset: int, length: int) -> dict:
    """The metadata items, by GUID, as bytes; refusals noted in ``h``."""
    table = _read(f, offset, VHDX_TABLE_SIZE)
    sig, _reserved, count = _unpack('<8sHH', table)
    if sig != b'metadata':
        raise Malformed('VHDX metadata table signature missing')
    if count > VHDX_MAX_ENTRIES:
        h.corrupt = 'VHDX metadata table with %d entries' % count
        raise _VhdxStop()
    items = {}
    for index in range(count):
        guid, item_offset, item_length, flags = _unpack(
            '<16sIII', table, 32 + 32 * index)
        name, size = _VHDX_ITEMS.get(guid, ('item %s' % guid.hex(), None))
        if item_length and (item_offset < VHDX_TABLE_SIZE
                            or item_offset + item_length > length):
            h.corrupt = ('the VHDX metadata %s lies outside the metadata '
                         'region' % name)
            raise _VhdxStop()
        if guid in items:
            h.corrupt = 'the VHDX metadata %s is there twice' % name
            raise _VhdxStop()
        if guid not in _VHDX_ITEMS:
            if flags & 4:                           # IsRequired
                h.unknown_required = h.unknown_required or (
                    'required metadata %s' % name)
            continue
        if size is not None and item_length != size:
            raise Malformed('VHDX %s of %d bytes' % (name, item_length))
        items[guid] = _read(f, offset + item_offset,
                            min(item_length, VHDX_TABLE_SIZE))
    missing = [_VHDX_ITEMS[g][0] for g in _VHDX_NEEDED_ITEMS
               if g not in items]
    if missing:
        raise Malformed('VHDX metadata without %s' % ', '.join(missing))
    return items


def _vhdx_parent_name(locator: bytes) -> str:
    """The parent path a locator names, for the operator's log only."""
    try:
        _type, _reserved, count = _unpack('<16sHH', locator)
        names = {}
        for index in range(min(count, 16)):
            key_at, value_at, key_len, value_len = _unpack(
                '<IIHH', locator, 20 + 12 * index)
            key = locator[key_at:key_at + key_len].decode('utf-16-le')
            names[key] = locator[value_at:value_at + value_len].decode(
                'utf-16-le')
        return (names.get('relative_path') or names.get('absolute_win32_path')
                or names.get('parent_linkage') or '(parent locator)')
    except (Malformed, UnicodeDecodeError):
        return '(parent locator)'


def parse(f, file_size: int) -> Header | None:
    """A VHDX as qemu 7.2 opens it, and what qemu does not check.

    oslo.utils' ``VHDXInspector`` reads only the virtual size: region
    table 1 (no checksum) to the metadata region, the first virtual-disk-
    size item there.  It reads no header, so it misses a log that needs
    replay, a differencing disk (HasParent, parent locator), unknown
    required regions and metadata, tables and blocks outside the file,
    overlapping regions, a BAT too small for the virtual size, and its
    only safety check is the null one.  qemu checks most of these when it
    opens the file, but it reads only region table 1, replays the log when
    it opens the file for writing (``qemu-img check -r``), and reads past
    the end of a truncated file as zeros; a second reader (Hyper-V) may
    prefer region table 2.  Both tables must therefore agree here.
    """
    if _read(f, 0, 8) != VHDX_SIGNATURE:
        return None
    if file_size < VHDX_HEADER_AREA:
        raise Malformed('VHDX shorter than its 1 MiB header area')
    h = Header('vhdx')
    try:
        _parse_vhdx(f, file_size, h)
    except _VhdxStop:
        pass
    return h


def _parse_vhdx(f, file_size: int, h: Header) -> None:
    header = _vhdx_current_header(f, h)
    log_guid = header[48:64]
    log_version, _version, log_length, log_offset = _unpack('<HHIQ',
                                                            header, 64)
    if log_guid.strip(b'\0'):
        h.log = 'log GUID %s' % log_guid.hex()
    taken: list = []
    if log_length:
        _vhdx_place(h, 'log', log_offset, log_length, file_size, taken)
    regions = {}
    for guid, offset, length, required in _vhdx_regions(f, h):
        name = {_VHDX_BAT: 'BAT region',
                _VHDX_METADATA: 'metadata region'}.get(
                    guid, 'region %s' % guid.hex())
        _vhdx_place(h, name, offset, length, file_size, taken)
        if guid in regions:
            h.corrupt = 'the VHDX %s is there twice' % name
            raise _VhdxStop()
        if guid in (_VHDX_BAT, _VHDX_METADATA):
            regions[guid] = (offset, length)
        elif required:
            h.unknown_required = 'required %s' % name
    if len(regions) < 2:
        raise Malformed('VHDX without a BAT or metadata region')
    items = _vhdx_metadata(f, h, *regions[_VHDX_METADATA])
    block_size, bits = _unpack('<II', items[_VHDX_FILE_PARAMETERS])
    size, = _unpack('<Q', items[_VHDX_VIRTUAL_DISK_SIZE])
    logical, = _unpack('<I', items[_VHDX_LOGICAL_SECTOR])
    physical, = _unpack('<I', items[_VHDX_PHYSICAL_SECTOR])
    has_parent = bool(bits & 2)
    h.subformat = ('differencing' if has_parent
                   else 'fixed' if bits & 1 else 'dynamic')
    h.virtual_size, h.qemu_sizes = size, (size,)
    h.sizes['metadata'] = size
    if has_parent or _VHDX_PARENT_LOCATOR in items:
        h.parent = _vhdx_parent_name(items.get(_VHDX_PARENT_LOCATOR, b''))
    if (block_size < _MiB or block_size > 256 * _MiB
            or block_size & (block_size - 1)):
        raise Malformed('VHDX block size %d' % block_size)
    if logical not in (512, 4096) or physical not in (512, 4096):
        raise Malformed('VHDX sector sizes %d/%d' % (logical, physical))
    if size % logical or size > VHDX_MAX_SIZE:
        h.corrupt = 'the VHDX virtual size %d is not valid' % size
        return
    _vhdx_bat(f, h, file_size, regions[_VHDX_BAT], block_size, logical,
              has_parent, taken)


def _vhdx_bat(f, h: Header, file_size: int, region: tuple, block: int,
              logical: int, has_parent: bool, taken: list) -> None:
    """The BAT covers the virtual size; present blocks lie in the file."""
    chunk = (1 << 23) * logical // block   # payload blocks per bitmap
    blocks = -(-h.virtual_size // block)
    if has_parent:
        entries = -(-blocks // chunk) * (chunk + 1)
    else:
        entries = blocks + (blocks - 1) // chunk if blocks else 0
    room = region[1] // 8
    # Guest bytes the BAT region can address: qemu refuses a smaller BAT.
    h.sizes['BAT'] = min(h.virtual_size,
                         (room - room // (chunk + 1)) * block)
    if entries > room or entries > VHDX_MAX_BAT_WALK:
        return
    bat = array.array('Q')
    bat.frombytes(_read(f, region[0], entries * 8))
    if sys.byteorder == 'big':  # pragma: no cover
        bat.byteswap()
    for index, entry in enumerate(bat):
        if not entry:
            continue
        state, offset = entry & 7, (entry >> 20) << 20
        bitmap = index % (chunk + 1) == chunk
        if state not in (_VHDX_BITMAP_STATES if bitmap
                         else _VHDX_PAYLOAD_STATES):
            h.corrupt = 'VHDX block state %d' % state
            return
        if state == VHDX_PARTIALLY_PRESENT and not has_parent:
            h.parent = h.parent or '(partially present block)'
        if state in (VHDX_FULLY_PRESENT, VHDX_PARTIALLY_PRESENT):
            length = _MiB if bitmap else block
            try:
                _vhdx_place(h, 'block %d' % index, offset, length,
                            file_size, taken[:])
            except _VhdxStop:
                return


def guest_bytes(f, file_size: int) -> binary.BlockMapBytes:
    """The guest's bytes of a fixed or dynamic VHDX through its BAT.

    Only a VHDX :func:`parse` finds whole: no log to replay, no parent,
    nothing unknown required; :class:`NotPlain` otherwise, and for a
    partially present block.
    """
    h = parse(f, file_size)
    if h is None or h.corrupt or h.parent or h.log or h.unknown_required:
        raise base.NotPlain('not a plain VHDX')
    scratch = Header('vhdx')
    try:
        regions = {guid: (offset, length) for guid, offset, length, _r
                   in _vhdx_regions(f, scratch)}
        items = _vhdx_metadata(f, scratch, *regions[_VHDX_METADATA])
    except (_VhdxStop, KeyError, Malformed) as exc:
        raise base.NotPlain('VHDX regions: %s' % (exc or scratch.corrupt))
    block, _bits = _unpack('<II', items[_VHDX_FILE_PARAMETERS])
    logical, = _unpack('<I', items[_VHDX_LOGICAL_SECTOR])
    chunk = (1 << 23) * logical // block   # payload blocks per bitmap
    bat_offset, bat_length = regions[_VHDX_BAT]

    def locate(index: int) -> int | None:
        at = index + index // chunk         # past the bitmap entries
        if at * 8 + 8 > bat_length:
            return None
        entry = binary.entry(f, bat_offset, at, '<Q')
        state = entry & 7
        if state == VHDX_FULLY_PRESENT:
            return (entry >> 20) << 20
        if state == VHDX_PARTIALLY_PRESENT:
            raise base.NotPlain('a partially present VHDX block')
        return None                         # not present, zero, unmapped
    return binary.BlockMapBytes(f, h.virtual_size, block, locate)


def has_magic(f, file_size: int) -> bool:
    return _read(f, 0, 8) == VHDX_SIGNATURE


VHDX_LOG = safety.Check(
    'vhdx_log', 'the VHDX image was not closed cleanly: its log holds '
    'writes that must be replayed first',
    'the current VHDX header names no log (LogGuid zero): a log is replayed '
    'into the file when it is opened for writing (qemu-img check -r), so '
    'the disk read and the disk stored could differ',
    (safety.BYTES,), 'the VHDX has no log to replay', formats=('vhdx',))
VHDX_REQUIRED = safety.Check(
    'vhdx_required', 'the VHDX image requires regions or metadata this '
    'cloud does not know',
    'no region or metadata item marked required whose meaning we cannot '
    'check (the specification says a reader must then refuse the file)',
    (safety.BYTES,), 'no unknown required VHDX regions or metadata',
    formats=('vhdx',))


def check_header(h: Header, policy) -> None:
    if h.log:
        VHDX_LOG.reject(h.log)
    if h.unknown_required:
        VHDX_REQUIRED.reject(h.unknown_required)


#: The 1 MiB header area, a 1 MiB log and a 1 MiB metadata region, as
#: qemu-img writes them; the BAT region comes on top.
_VHDX_FIXED_OVERHEAD = 3 * units.MiB


def vhdx_default_block_size(virtual_size: int) -> int:
    """The block size qemu-img (7.2) chooses when none is given."""
    if virtual_size > 32 * units.TiB:
        return 64 * units.MiB
    if virtual_size > 100 * units.GiB:
        return 32 * units.MiB
    if virtual_size > units.GiB:
        return 16 * units.MiB
    return 8 * units.MiB


def _vhdx_bound(virtual_size: int, opts: dict) -> int:
    """Whole blocks (a block with one byte of data is written whole, and
    fixed output allocates every block), the BAT with its sector-bitmap
    entries rounded up to a MiB, and qemu's header, log and metadata."""
    block = vhdx_default_block_size(virtual_size)
    blocks = -(-virtual_size // block)
    chunk_ratio = (1 << 23) * 512 // block
    bat = (blocks + blocks // chunk_ratio + 1) * 8
    return (blocks * block + -(-bat // units.MiB) * units.MiB
            + _VHDX_FIXED_OVERHEAD + 16 * units.MiB)


FORMAT = base.Format(
    'vhdx', qemu_driver='vhdx', inspector='vhdx', checkable=True,
    description='Microsoft VHDX (Hyper-V); see vhdx_subformat.',
    option_names=('vhdx_subformat',),
    output_options=lambda group: ({'subformat': group.vhdx_subformat},
                                  False),
    # A fixed disk is asked for because the upload may be dynamic; a
    # dynamic one reads the same either way.
    rewrites_same_format=lambda opts, compressed: (
        opts.get('subformat') == 'fixed'),
    upper_bound=_vhdx_bound,
    # The virtual size is one metadata item that verify_output has just
    # parsed and checked against the BAT; qemu reports exactly it.
    output_size_from=base.HEADER,
    has_magic=has_magic, parse=parse, checks=(VHDX_LOG, VHDX_REQUIRED),
    guest_bytes=guest_bytes,
    check_header=check_header)
