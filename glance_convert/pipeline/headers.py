"""Read the headers of qcow2, VMDK, VHD and VDI files without qemu.

oslo.utils' ``format_inspector`` detects formats and checks what its authors
needed; it does not report a qcow2 data-file header extension, encryption,
the corrupt bit or tables beyond the end of the file, VHD and VDI
differencing disks, or the fields qemu reads from a VMDK descriptor.  This
module parses those from the upload's own bytes so that the policy in
:mod:`glance_convert.pipeline.inspection` can refuse an image before
``qemu-img`` opens it (``qemu-img info`` already opens data files and
VMDK extents).

Parsers only describe; they never decide.  Each returns a :class:`Header`
or ``None`` when the file does not carry the format's magic; they raise
:class:`Malformed` when it does but the structures cannot be read.  Layouts
follow qemu 7.2's ``block/qcow2.c``, ``vmdk.c``, ``vpc.c`` and ``vdi.c``
and the published format specifications.
"""

from __future__ import annotations

import array
import dataclasses
import os
import struct
import sys

SECTOR = 512


class Malformed(Exception):
    """The file has the format's magic but its headers cannot be read."""


@dataclasses.dataclass
class Header:
    """Facts from one image's headers, the same fields for every format."""

    format: str                         # Glance name
    virtual_size: int = 0               # the size qemu will use
    # Every size the headers state, by where it comes from; all must agree
    # (see ``size_claims_agree``).
    sizes: dict = dataclasses.field(default_factory=dict)
    # Sizes qemu may legitimately report (VHD: footer size or CHS).
    qemu_sizes: tuple = ()
    backing: str | None = None          # qcow2 backing file name
    parent: str | None = None           # differencing disk's parent
    data_file: str | None = None        # qcow2 external data file
    encryption: str | None = None       # method name
    corrupt: str | None = None          # why the headers are inconsistent
    unknown_features: int = 0           # qcow2 incompatible bits we refuse
    create_type: str | None = None      # VMDK createType, as qemu reads it
    descriptor_file: bool = False       # VMDK: extents are other files
    extents: list = dataclasses.field(default_factory=list)
    subformat: str | None = None

    def size_claims_agree(self) -> bool:
        return len(set(self.sizes.values())) <= 1


def _read(f, offset: int, length: int) -> bytes:
    f.seek(offset)
    return f.read(length)


def _unpack(fmt: str, data: bytes, offset: int = 0):
    try:
        return struct.unpack_from(fmt, data, offset)
    except struct.error:
        raise Malformed('header is truncated')


def parse(path: str, disk_format: str) -> Header | None:
    """The header facts of ``path`` read as ``disk_format`` (Glance name)."""
    parser = _PARSERS.get(disk_format)
    if parser is None:
        return None
    with open(path, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        return parser(f, size)


def has_magic(path: str, disk_format: str) -> bool:
    """True when the file starts (VHD: starts or ends) with the magic."""
    with open(path, 'rb') as f:
        head = f.read(0x44)
        if disk_format == 'qcow2':
            return head[:4] == b'QFI\xfb'
        if disk_format == 'vmdk':
            return head[:4] in (b'KDMV', b'COWD') or head.startswith(b'#')
        if disk_format == 'vdi':
            return head[0x40:0x44] == b'\x7f\x10\xda\xbe'
        if disk_format == 'vhd':
            size = os.fstat(f.fileno()).st_size
            tail = _read(f, max(size - SECTOR, 0), 8)
            return head[:8] == b'conectix' or tail == b'conectix'
    return False


# --- qcow2 (docs/interop/qcow2.txt) -----------------------------------------

QCOW2_INCOMPAT_DIRTY = 1 << 0
QCOW2_INCOMPAT_CORRUPT = 1 << 1
QCOW2_INCOMPAT_DATA_FILE = 1 << 2
QCOW2_INCOMPAT_COMPRESSION = 1 << 3
QCOW2_INCOMPAT_EXTL2 = 1 << 4
QCOW2_KNOWN_INCOMPAT = (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT |
                        QCOW2_INCOMPAT_DATA_FILE | QCOW2_INCOMPAT_COMPRESSION)
QCOW2_EXT_BACKING_FORMAT = 0xe2792aca
QCOW2_EXT_FDE = 0x0537be77
QCOW2_EXT_DATA_FILE = 0x44415441
_QCOW2_CRYPT = {1: 'qcow2 AES', 2: 'qcow2 LUKS'}


def parse_qcow2(f, file_size: int) -> Header | None:
    head = _read(f, 0, 4096)
    if head[:4] != b'QFI\xfb':
        return None
    (_magic, version, backing_offset, backing_size, cluster_bits, size,
     crypt, l1_size, l1_offset, refcount_offset, refcount_clusters,
     nb_snapshots, snapshots_offset) = _unpack('>4sIQIIQIIQQIIQ', head)
    h = Header('qcow2', virtual_size=size, sizes={'header': size},
               qemu_sizes=(size,), subformat='v%d' % version)
    if version not in (2, 3):
        raise Malformed('qcow2 version %d' % version)
    if not 9 <= cluster_bits <= 21:
        raise Malformed('cluster_bits %d' % cluster_bits)
    cluster = 1 << cluster_bits
    header_length = 72
    if version == 3:
        incompat, _compat, _autoclear, _order, header_length = _unpack(
            '>QQQII', head, 72)
        if header_length < 104 or header_length > cluster:
            raise Malformed('header_length %d' % header_length)
        if incompat & QCOW2_INCOMPAT_CORRUPT:
            h.corrupt = 'the corrupt bit is set'
        if incompat & QCOW2_INCOMPAT_DATA_FILE:
            h.data_file = '(data-file bit set)'
        h.unknown_features = incompat & ~QCOW2_KNOWN_INCOMPAT
    if crypt:
        h.encryption = _QCOW2_CRYPT.get(crypt, 'method %d' % crypt)
    if backing_offset:
        if backing_size > 1023 or backing_offset + backing_size > cluster:
            h.backing = '(malformed backing file name)'
        else:
            h.backing = _read(f, backing_offset, backing_size).decode(
                'utf-8', 'replace') or '(empty name)'
    _qcow2_extensions(f, h, header_length, cluster,
                      backing_offset or cluster)
    # Tables the header points to must lie inside the file.
    for name, offset, length in (
            ('L1 table', l1_offset, l1_size * 8),
            ('refcount table', refcount_offset,
             refcount_clusters * cluster),
            ('snapshot table', snapshots_offset, 1 if nb_snapshots else 0)):
        if length and (offset % cluster or offset + length > file_size):
            h.corrupt = h.corrupt or ('the %s lies beyond the end of the file'
                                      % name)
    if refcount_clusters == 0:
        h.corrupt = h.corrupt or 'no refcount table'
    # Guest bytes the L1 table can address: qemu refuses a smaller table.
    addressable = l1_size * (cluster // 8) * cluster
    h.sizes['L1 table'] = min(addressable, size)
    return h


def _qcow2_extensions(f, h: Header, header_length: int, cluster: int,
                      end: int) -> None:
    offset = header_length
    limit = min(end, cluster)
    while offset + 8 <= limit:
        ext_type, length = _unpack('>II', _read(f, offset, 8))
        if ext_type == 0:
            return
        data = _read(f, offset + 8, length)
        if len(data) < length or offset + 8 + length > limit:
            raise Malformed('header extension overruns the header cluster')
        if ext_type == QCOW2_EXT_DATA_FILE:
            h.data_file = data.decode('utf-8', 'replace')
        elif ext_type == QCOW2_EXT_FDE:
            h.encryption = h.encryption or 'qcow2 LUKS header extension'
        offset += 8 + ((length + 7) & ~7)


# --- VMDK (VMware Virtual Disk Format 1.1; qemu block/vmdk.c) ----------------

VMDK_GD_AT_END = 0xffffffffffffffff
VMDK_EXTENT_ACCESS = ('RW', 'RDONLY', 'NOACCESS')


def qemu_descriptor_value(text: str, key: str) -> str | None:
    """A descriptor value exactly as qemu's ``vmdk_parse_description``.

    qemu finds the first occurrence of ``key`` anywhere in the text (even in
    a comment), skips two characters (``="``) and reads up to the next
    double quote.  The comparison is case-sensitive.
    """
    pos = text.find(key)
    if pos < 0:
        return None
    start = pos + len(key) + 2
    end = text.find('"', start)
    if start >= len(text) or end < 0:
        return None
    return text[start:end]


def _qemu_parent_cid(text: str) -> str | None:
    # qemu: strstr(desc, "parentCID") then sscanf("parentCID=%x").
    pos = text.find('parentCID')
    if pos < 0:
        return None
    rest = text[pos + len('parentCID'):]
    if not rest.startswith('='):
        return '(unparseable)'
    return rest[1:].split(None, 1)[0] if rest[1:].strip() else ''


def vmdk_extents(text: str) -> list[tuple]:
    """Every line that looks like an extent, however qemu would treat it.

    Returns (access, sectors, type, filename, line) tuples; unparseable
    extent-like lines come back with ``None`` fields so that the policy
    can refuse them.
    """
    extents = []
    for line in text.splitlines():
        words = line.strip().split(None, 3)
        if not words or words[0].upper() not in VMDK_EXTENT_ACCESS:
            continue
        try:
            sectors = int(words[1])
            kind = words[2]
            rest = words[3]
            name = rest.split('"')[1] if rest.startswith('"') else None
        except (IndexError, ValueError):
            sectors = kind = name = None
        extents.append((words[0], sectors, kind, name, line.strip()))
    return extents


def _vmdk_footer(f, file_size: int) -> tuple:
    """The footer copy of a sparse header, as :func:`_sparse_header`.

    A streamOptimized VMDK written front to back has its grain directory
    offset only there, 1024 bytes before the end; qemu uses it.
    """
    if file_size < 3 * SECTOR:
        raise Malformed('stream-optimized VMDK without a footer')
    footer = _sparse_header(_read(f, file_size - 2 * SECTOR, SECTOR))
    if footer[0] != b'KDMV':
        raise Malformed('stream-optimized VMDK footer missing')
    return footer


def _sparse_header(data: bytes) -> tuple:
    # magic, version, flags, capacity, grain, desc_offset, desc_size,
    # num_gtes_per_gt, rgd_offset, gd_offset
    return _unpack('<4sIIQQQQIQQ', data)


def parse_vmdk(f, file_size: int) -> Header | None:
    head = _read(f, 0, SECTOR)
    if head[:4] == b'COWD':
        raise Malformed('VMDK3 (COWD) sparse extents are not supported')
    if head[:4] != b'KDMV':
        if not head.startswith(b'#'):
            return None
        text = _read(f, 0, 1 << 20).decode('ascii', 'replace')
        h = Header('vmdk', descriptor_file=True, subformat='descriptor')
        _vmdk_descriptor(h, text)
        return h
    (_m, version, _flags, capacity, grain, desc_sector, desc_sectors,
     _gtes, _rgd, gd_offset) = _sparse_header(head)
    if version not in (1, 2, 3):
        raise Malformed('VMDK version %d' % version)
    h = Header('vmdk', virtual_size=capacity * SECTOR,
               sizes={'header': capacity * SECTOR},
               qemu_sizes=(capacity * SECTOR,), subformat='sparse')
    if gd_offset == VMDK_GD_AT_END:
        footer = _vmdk_footer(f, file_size)
        h.sizes['footer'] = footer[3] * SECTOR
        h.virtual_size = footer[3] * SECTOR
        h.qemu_sizes = (footer[3] * SECTOR,)
    if not desc_sector or not desc_sectors:
        raise Malformed('VMDK without an embedded descriptor')
    if desc_sector * SECTOR + desc_sectors * SECTOR > file_size:
        raise Malformed('VMDK descriptor beyond the end of the file')
    raw = _read(f, desc_sector * SECTOR, min(desc_sectors * SECTOR, 1 << 20))
    text = raw.split(b'\0', 1)[0].decode('ascii', 'replace')
    # capacity 0: qemu parses the embedded descriptor as a descriptor file
    # and opens its extents (CVE-2022-47951).
    h.descriptor_file = capacity == 0
    _vmdk_descriptor(h, text)
    for _access, sectors, _kind, _name, _line in h.extents[:1]:
        if sectors is not None and capacity:
            h.sizes['descriptor extent'] = sectors * SECTOR
    return h


VMDK_FLAG_ZEROED_GRAINS = 1 << 2
VMDK_MAX_GTES = 512             # qemu refuses larger grain tables
VMDK_MAX_TABLES = 1 << 16       # 2 TiB at 64 KiB grains; 128 MiB to read


def vmdk_data_by_table(f, file_size: int) -> list[tuple[int, int]] | None:
    """Allocated bytes per grain table of a sparse VMDK, from metadata.

    Returns ``[(guest offset of the table, allocated bytes)]`` for the
    tables that hold data, read from the grain directory and tables (4
    bytes per grain), never from the grains.  Its size is bounded by the
    number of tables, not by how fragmented the data is, which makes it
    safe to ask of a hostile image.  None when the file is not a plain
    sparse extent or its tables are out of the usual bounds (the caller
    then does without); :class:`Malformed` for a header or footer that
    cannot be read.
    """
    head = _read(f, 0, SECTOR)
    if head[:4] != b'KDMV':
        return None
    fields = _sparse_header(head)
    if fields[9] == VMDK_GD_AT_END:
        fields = _vmdk_footer(f, file_size)
    _m, _v, flags, capacity, grain, _ds, _dn, gtes, _rgd, gd = fields
    if not grain or not gtes or gtes > VMDK_MAX_GTES:
        return None
    coverage = gtes * grain                    # sectors per grain table
    tables = -(-capacity // coverage)
    if tables > VMDK_MAX_TABLES or (gd * SECTOR + tables * 4 > file_size):
        return None
    zeroed = flags & VMDK_FLAG_ZEROED_GRAINS
    out = []
    for index, table in enumerate(_uint32s(_read(f, gd * SECTOR,
                                                 tables * 4))):
        if not table:
            continue
        entries = _uint32s(_read(f, table * SECTOR, gtes * 4))
        if len(entries) < gtes:
            return None
        unallocated = entries.count(0) + (entries.count(1) if zeroed else 0)
        if unallocated < gtes:
            out.append((index * coverage * SECTOR,
                        (gtes - unallocated) * grain * SECTOR))
    return out


QCOW2_L2_OFFSET = 0x00fffffffffffe00
QCOW2_ZERO = 1
QCOW2_MAX_TABLES = 1 << 16       # L2 tables read at most (4 GiB at 64 KiB)
#: Entries per piece of an L2 table that qcow2_work_map weighs on its own.
QCOW2_PIECE_ENTRIES = 512
#: How much more a compressed cluster costs to convert than a plain one
#: (decompression against a copy from the page cache).
QCOW2_COMPRESSED_COST = 8
# Compressed entries have bit 62 set: 0x40 in the big-endian top byte.
_COMPRESSED_TOP = bytes(1 if b & 0x40 else 0 for b in range(256))


def qcow2_work_map(f, file_size: int) -> list[tuple[int, int]] | None:
    """Where a qcow2 image's conversion work lies: [(offset, bytes)].

    For each piece of the guest disk covered by :data:`QCOW2_PIECE_ENTRIES`
    entries of an L2 table (32 MiB at 64 KiB clusters), the allocated
    clusters, compressed ones counted as a whole cluster and plain ones as
    1/:data:`QCOW2_COMPRESSED_COST` of one: decompression is where the time
    goes.  Never more than the piece spans, so it reads as "that many
    bytes of work at the start of the piece", like
    :func:`vmdk_data_by_table`.  Read from the L1 and L2 tables only (8
    bytes per cluster), never from the data: the cost is bounded by the
    number of tables however fragmented the image.  None when the image
    is unusual (extended L2 entries, too many tables, tables outside the
    file): the caller then does without.
    """
    head = _read(f, 0, 104)
    if head[:4] != b'QFI\xfb' or len(head) < 72:
        return None
    (_magic, version, _bo, _bs, cluster_bits, size, _crypt, l1_size,
     l1_offset) = _unpack('>4sIQIIQIIQ', head)
    if not 9 <= cluster_bits <= 21:
        return None
    if version == 3 and len(head) >= 80 and (
            _unpack('>Q', head, 72)[0] & QCOW2_INCOMPAT_EXTL2):
        return None
    cluster = 1 << cluster_bits
    entries = cluster // 8
    coverage = entries * cluster                # guest bytes per L2 table
    piece = min(QCOW2_PIECE_ENTRIES, entries)
    tables = min(l1_size, -(-size // coverage))
    if tables > QCOW2_MAX_TABLES or l1_offset + tables * 8 > file_size:
        return None
    l1 = _uint64s(_read(f, l1_offset, tables * 8))
    out = []
    for index, entry in enumerate(l1):
        offset = entry & QCOW2_L2_OFFSET
        if not offset:
            continue
        if offset + cluster > file_size:
            return None
        data = _read(f, offset, cluster)
        l2 = _uint64s(data)
        for first in range(0, len(l2), piece):
            part = l2[first:first + piece]
            # Free entries are 0, unallocated zero clusters 1 (the zero
            # flag alone); a zero cluster that keeps its offset counts as
            # data: only the balance suffers.
            allocated = len(part) - part.count(0) - part.count(QCOW2_ZERO)
            if not allocated:
                continue
            compressed = data[first * 8:(first + len(part)) * 8:8].translate(
                _COMPRESSED_TOP).count(1)
            work = (compressed * cluster + (allocated - compressed)
                    * cluster // QCOW2_COMPRESSED_COST)
            out.append((index * coverage + first * cluster, work))
    return out


def _uint64s(data: bytes) -> array.array:
    """Big-endian uint64 values (a short tail is dropped)."""
    values = array.array('Q')
    values.frombytes(data[:len(data) // 8 * 8])
    if sys.byteorder == 'little':
        values.byteswap()
    return values


def _uint32s(data: bytes) -> array.array:
    """Little-endian uint32 values (a short tail is dropped)."""
    values = array.array('I')
    values.frombytes(data[:len(data) // 4 * 4])
    if sys.byteorder == 'big':  # pragma: no cover
        values.byteswap()
    return values


def _vmdk_descriptor(h: Header, text: str) -> None:
    if '\ufffd' in text:
        raise Malformed('VMDK descriptor is not ASCII')
    h.create_type = qemu_descriptor_value(text, 'createType')
    # More than one createType (any case) means two readers may disagree.
    if text.lower().count('createtype') > 1:
        h.create_type = '(more than one createType)'
    parent_cid = _qemu_parent_cid(text)
    hint = qemu_descriptor_value(text, 'parentFileNameHint')
    if hint is not None or 'parentfilenamehint' in text.lower():
        h.parent = hint or '(parentFileNameHint)'
    elif parent_cid is not None and parent_cid.strip().lower() != 'ffffffff':
        h.parent = '(parentCID %s)' % parent_cid.strip()
    h.extents = vmdk_extents(text)


# --- VHD (Microsoft Virtual Hard Disk Image Format Specification) -----------

VHD_FIXED, VHD_DYNAMIC, VHD_DIFFERENCING = 2, 3, 4


def _vhd_footer(data: bytes) -> dict | None:
    if data[:8] != b'conectix' or len(data) < SECTOR:
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


def parse_vhd(f, file_size: int) -> Header | None:
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
        if dyn[:8] != b'cxsparse':
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


# --- VDI (VirtualBox; qemu block/vdi.c) --------------------------------------

VDI_DYNAMIC, VDI_STATIC = 1, 2


def parse_vdi(f, file_size: int) -> Header | None:
    head = _read(f, 0, SECTOR)
    if head[0x40:0x44] != b'\x7f\x10\xda\xbe':
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


_PARSERS = {'qcow2': parse_qcow2, 'vmdk': parse_vmdk, 'vhd': parse_vhd,
            'vdi': parse_vdi}
