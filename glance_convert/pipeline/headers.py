"""Read the headers of qcow2, VMDK, VHD, VDI and VHDX files without qemu.

oslo.utils' ``format_inspector`` detects formats and checks what its authors
needed; it does not report a qcow2 data-file header extension, encryption,
the corrupt bit or tables beyond the end of the file, VHD and VDI
differencing disks, the fields qemu reads from a VMDK descriptor, or
anything of a VHDX but its virtual size (see :func:`parse_vhdx`).  This
module parses those from the upload's own bytes so that the policy in
:mod:`glance_convert.pipeline.inspection` can refuse an image before
``qemu-img`` opens it (``qemu-img info`` already opens data files and
VMDK extents).

Parsers only describe; they never decide.  Each returns a :class:`Header`
or ``None`` when the file does not carry the format's magic; they raise
:class:`Malformed` when it does but the structures cannot be read.  Layouts
follow qemu 7.2's ``block/qcow2.c``, ``vmdk.c``, ``vpc.c``, ``vdi.c`` and
``vhdx.c`` and the published format specifications (MS-VHDX for VHDX).
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
    log: str | None = None              # VHDX: why its log needs replay
    unknown_required: str | None = None  # VHDX: a required item we lack

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
        if disk_format == 'vhdx':
            return head[:8] == VHDX_SIGNATURE
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


# --- VHDX (MS-VHDX specification; qemu block/vhdx.c) -------------------------

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


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ (_CRC32C_POLY if n & 1 else 0)
        table.append(n)
    return table


def _gf2_times(matrix: list[int], vector: int) -> int:
    """A 32x32 bit matrix (its columns) times a 32-bit vector."""
    total, i = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _zero_byte_powers() -> list[list[int]]:
    """Operators that run the CRC register over 1, 2, 4 ... zero bytes.

    Over zero bytes the register changes linearly, so a run of them is a
    matrix power: a few dozen steps instead of one per byte.
    """
    op = [_CRC32C_POLY] + [1 << n for n in range(31)]   # one zero bit
    for _ in range(3):                                   # eight bits
        op = [_gf2_times(op, column) for column in op]
    powers = [op]
    for _ in range(31):                                  # up to 2 GiB
        op = [_gf2_times(op, column) for column in op]
        powers.append(op)
    return powers


_CRC32C = _crc32c_table()
_ZERO_RUNS = _zero_byte_powers()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of VHDX headers and tables.

    Written out because no library for it is in OpenStack's requirements.
    It runs over 136 KiB per image (two headers, two region tables), which
    are nearly all zeros: trailing zeros are skipped in matrix steps, so
    only the bytes in use are walked one by one.
    """
    used = data.rstrip(b'\0')
    crc = 0xffffffff
    table = _CRC32C
    for byte in used:
        crc = table[(crc ^ byte) & 0xff] ^ (crc >> 8)
    zeros, k = len(data) - len(used), 0
    while zeros:
        if zeros & 1:
            crc = _gf2_times(_ZERO_RUNS[k], crc)
        zeros >>= 1
        k += 1
    return crc ^ 0xffffffff


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


def parse_vhdx(f, file_size: int) -> Header | None:
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


_PARSERS = {'qcow2': parse_qcow2, 'vmdk': parse_vmdk, 'vhd': parse_vhd,
            'vdi': parse_vdi, 'vhdx': parse_vhdx}
