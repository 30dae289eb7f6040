"""VHD (qemu-img: ``vpc``): Microsoft's Virtual Hard Disk.

Glance calls it ``vhd`` and qemu ``vpc``; passing Glance's name to
``qemu-img -f`` is why every VHD import fails with Glance's own plugin.
A fixed VHD is the disk followed by a footer, so format_inspector reads
it as raw.  Layout: Microsoft's Virtual Hard Disk Image Format
Specification and qemu's ``block/vpc.c``.
"""

from __future__ import annotations

from glance_convert import units
from glance_convert.formats import base
from glance_convert.formats import binary
from glance_convert.formats.base import Header
from glance_convert.formats.base import Malformed
from glance_convert.formats.binary import SECTOR

_read = binary.read
_unpack = binary.unpack

#: The footer's cookie (at the end, and at offset 0 of a dynamic disk).
MAGIC = b'conectix'
#: The dynamic disk header's cookie.
DYNAMIC_MAGIC = b'cxsparse'

VHD_FIXED, VHD_DYNAMIC, VHD_DIFFERENCING = 2, 3, 4


def _vhd_footer(data: bytes) -> dict | None:
    if data[:8] != MAGIC or len(data) < SECTOR:
        return None
    (original, current, cylinders, heads, sectors, disk_type,
     checksum) = _unpack('>QQHBBII', data, 40)
    blank = bytearray(data[:SECTOR])
    blank[64:68] = b'\0\0\0\0'
    return {'original': original, 'current': current, 'type': disk_type,
            'chs': cylinders * heads * sectors * SECTOR,
            'creator': bytes(data[28:32]),
            'checksum_ok': checksum == (~sum(blank)) & 0xffffffff,
            'data_offset': _unpack('>Q', data, 16)[0]}


def parse(f, file_size: int) -> Header | None:
    if file_size < SECTOR:
        return None
    end = _vhd_footer(_read(f, file_size - SECTOR, SECTOR))
    start = _vhd_footer(_read(f, 0, SECTOR))
    if end is None and start is None:
        return None
    footer = start or end  # qemu reads the copy at offset 0 first
    kind = {VHD_FIXED: 'fixed', VHD_DYNAMIC: 'dynamic',
            VHD_DIFFERENCING: 'differencing'}.get(footer['type'])
    h = Header('vhd', virtual_size=footer['current'], subformat=kind,
               qemu_sizes=(footer['current'], footer['chs']))
    for name, ftr in (('footer copy', start), ('footer', end)):
        if ftr is not None:
            h.sizes[name] = ftr['current']
            if ftr['type'] != footer['type']:
                h.corrupt = 'the VHD footer copies disagree about the type'
            if not ftr['checksum_ok']:
                h.corrupt = 'the VHD %s checksum is wrong' % name
    if kind is None:
        raise Malformed('VHD disk type %d' % footer['type'])
    if kind == 'differencing':
        h.parent = '(VHD parent)'
    if kind == 'fixed' and end is None:
        raise Malformed('fixed VHD without a footer at the end')
    if kind == 'fixed' and file_size - SECTOR < footer['current']:
        h.corrupt = 'the fixed VHD is shorter than its size'
    if kind != 'fixed':
        if footer['data_offset'] + 1024 > file_size:
            raise Malformed('VHD dynamic header beyond the end of the file')
        dyn = _read(f, footer['data_offset'], 1024)
        if dyn[:8] != DYNAMIC_MAGIC:
            raise Malformed('VHD dynamic header missing')
        table_offset, _v, max_entries, block_size = _unpack('>QIII', dyn, 16)
        if block_size == 0 or block_size % SECTOR:
            raise Malformed('VHD block size %d' % block_size)
        if table_offset + max_entries * 4 > file_size:
            h.corrupt = 'the VHD block table lies beyond the end of the file'
        h.sizes['block table'] = min(max_entries * block_size,
                                     footer['current'])
        if dyn[40:56].strip(b'\0') or dyn[64:576].strip(b'\0'):
            h.parent = h.parent or '(VHD parent named in dynamic header)'
    return h


#: A block table entry for an absent block.
VHD_UNALLOCATED = 0xffffffff


def guest_bytes(f, file_size: int) -> binary.BlockMapBytes:
    """The guest's bytes of a fixed or dynamic VHD: the file itself, or
    through the block table, each block's sector bitmap skipped (as qemu
    reads it).  :class:`NotPlain` for a differencing or damaged one."""
    h = parse(f, file_size)
    if h is None or h.parent or h.corrupt:
        raise base.NotPlain('not a plain VHD')
    footer = (_vhd_footer(_read(f, 0, SECTOR))
              or _vhd_footer(_read(f, file_size - SECTOR, SECTOR)))
    size = footer['current']
    if footer['type'] == VHD_FIXED:
        # The disk itself, then the footer.
        return binary.BlockMapBytes(f, size, 1 << 20,
                                    lambda index: index << 20)
    dyn = _read(f, footer['data_offset'], 1024)
    table_offset, _v, max_entries, block_size = _unpack('>QIII', dyn, 16)
    bitmap = -(-(block_size // SECTOR // 8) // SECTOR) * SECTOR

    def locate(index: int) -> int | None:
        if index >= max_entries:
            return None
        sector = binary.entry(f, table_offset, index, '>I')
        if sector == VHD_UNALLOCATED:
            return None
        return sector * SECTOR + bitmap
    return binary.BlockMapBytes(f, size, block_size, locate)


def has_magic(f, file_size: int) -> bool:
    """The footer copy at the start, or the footer at the end."""
    tail = _read(f, max(file_size - SECTOR, 0), 8)
    return _read(f, 0, 8) == MAGIC or tail == MAGIC


def _vhd_options(group) -> tuple[dict, bool]:
    opts: dict = {'subformat': group.vhd_subformat}
    if group.vhd_force_size:
        # Exact size instead of qemu's CHS-geometry rounding; the output
        # is created first at a whole number of MiB (see _vhd_presize).
        opts['force_size'] = True
    return opts, False


def _vhd_presize(virtual_size: int, opts: dict) -> int | None:
    """``qemu-img convert`` cannot resize: with ``force_size`` the output is
    created first with the size rounded up to a whole MiB, then converted
    into with ``-n --target-is-zero``."""
    if opts.get('force_size'):
        return -(-virtual_size // units.MiB) * units.MiB
    return None


FORMAT = base.Format(
    'vhd', qemu_driver='vpc', inspector='vhd', checkable=False,
    description='Microsoft VHD (qemu-img "vpc"); see vhd_subformat and '
                'vhd_force_size.',
    option_names=('vhd_subformat', 'vhd_force_size'),
    output_options=_vhd_options,
    rewrites_same_format=lambda opts, compressed: (
        opts.get('subformat') == 'fixed' or bool(opts.get('force_size'))),
    presize=_vhd_presize,
    may_read_as_raw=True,
    raw_lookalike=lambda header: header.subformat == 'fixed',
    has_magic=has_magic, parse=parse, guest_bytes=guest_bytes)
