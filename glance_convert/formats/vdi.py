"""VDI: VirtualBox's format.

Layout: qemu's ``block/vdi.c``.
"""

from __future__ import annotations

from glance_convert.formats import base
from glance_convert.formats import binary
from glance_convert.formats.base import Header
from glance_convert.formats.base import Malformed
from glance_convert.formats.binary import SECTOR

_read = binary.read
_unpack = binary.unpack

#: The signature at offset 0x40 (after a 64-byte text banner).
MAGIC = b'\x7f\x10\xda\xbe'
MAGIC_OFFSET = 0x40

VDI_DYNAMIC, VDI_STATIC = 1, 2


def parse(f, file_size: int) -> Header | None:
    head = _read(f, 0, SECTOR)
    if head[MAGIC_OFFSET:MAGIC_OFFSET + 4] != MAGIC:
        return None
    if len(head) < SECTOR:
        raise Malformed('VDI header is truncated')
    image_type, = _unpack('<I', head, 0x4c)
    offset_bmap, offset_data = _unpack('<II', head, 0x154)
    disk_size, block_size, _extra, blocks, _allocated = _unpack(
        '<QIIII', head, 0x170)
    link, parent = head[0x1a8:0x1b8], head[0x1b8:0x1c8]
    kind = {VDI_DYNAMIC: 'dynamic', VDI_STATIC: 'static', 3: 'undo',
            4: 'differencing'}.get(image_type)
    if kind is None:
        raise Malformed('VDI image type %d' % image_type)
    h = Header('vdi', virtual_size=disk_size, subformat=kind,
               qemu_sizes=(disk_size,))
    if kind in ('undo', 'differencing') or link.strip(b'\0') or \
            parent.strip(b'\0'):
        h.parent = '(VDI %s image)' % kind
    if block_size == 0:
        raise Malformed('VDI block size 0')
    # qemu refuses a disk larger than its block map; a block map larger
    # than the disk (rounded up to whole blocks) is not what any tool
    # writes either.
    h.sizes['header'] = -(-disk_size // block_size) * block_size
    h.sizes['block map'] = blocks * block_size
    if offset_bmap + blocks * 4 > file_size or offset_data > file_size:
        h.corrupt = 'the VDI block map lies beyond the end of the file'
    if kind == 'static' and offset_data + blocks * block_size > file_size:
        h.corrupt = 'the static VDI is shorter than its size'
    return h


#: Block map entries for an absent block and a zero block.
VDI_UNALLOCATED, VDI_ZERO = 0xffffffff, 0xfffffffe


def guest_bytes(f, file_size: int) -> binary.BlockMapBytes:
    """The guest's bytes through the block map (:class:`NotPlain` for an
    image with a parent or a damaged header)."""
    h = parse(f, file_size)
    if h is None or h.parent or h.corrupt:
        raise base.NotPlain('not a plain VDI')
    head = _read(f, 0, SECTOR)
    offset_bmap, offset_data = _unpack('<II', head, 0x154)
    _size, block_size, _extra, blocks = _unpack('<QIII', head, 0x170)

    def locate(index: int) -> int | None:
        if index >= blocks:
            return None
        at = binary.entry(f, offset_bmap, index, '<I')
        if at in (VDI_UNALLOCATED, VDI_ZERO):
            return None
        return offset_data + at * block_size
    return binary.BlockMapBytes(f, h.virtual_size, block_size, locate)


def has_magic(f, file_size: int) -> bool:
    return _read(f, MAGIC_OFFSET, 4) == MAGIC


FORMAT = base.Format(
    'vdi', qemu_driver='vdi', inspector='vdi', checkable=True,
    description='VirtualBox.',
    option_names=(), output_options=lambda group: ({}, False),
    has_magic=has_magic, parse=parse, guest_bytes=guest_bytes)
