"""qcow2: QEMU's own format, and the one distribution cloud images use.

Its header can name a backing file and an external data file that qemu
would open (CVE-2024-32498), and its L1/L2 tables say where the
conversion's work lies for the parallel converter.  Layout:
qemu's ``docs/interop/qcow2.txt``.
"""

from __future__ import annotations

from glance_convert import safety
from glance_convert.formats import base
from glance_convert.formats import binary
from glance_convert.formats.base import Header
from glance_convert.formats.base import Malformed

_read = binary.read
_unpack = binary.unpack
_uint64s = binary.uint64s

MAGIC = b'QFI\xfb'

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


def parse(f, file_size: int) -> Header | None:
    head = _read(f, 0, 4096)
    if head[:4] != MAGIC:
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


def has_magic(f, file_size: int) -> bool:
    return _read(f, 0, 4) == MAGIC


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
    if head[:4] != MAGIC or len(head) < 72:
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


class GuestBytes:
    """The guest's bytes of a plain qcow2 image, through its L1 and L2
    tables.

    For an image already checked (the plugin's own output, or an upload
    stored as it is): reading a few guest sectors this way costs
    microseconds where a qemu-img start costs milliseconds; the tables
    read are bounded.  Plain clusters are read and zlib-compressed ones
    inflated, one cluster at most each; for anything else (zstd, extended
    L2 entries, another file named)
    :class:`~glance_convert.formats.base.NotPlain` is raised and the
    caller asks qemu-img.  Layout: qemu's ``docs/interop/qcow2.txt``.
    """

    #: L1 entries read at most (2 TiB of guest at 64 KiB clusters).
    MAX_L1 = 1 << 15
    #: L2 tables kept in memory, and read at most: a guest's few
    #: structures need a handful; tables that scatter them cost no more.
    CACHED_TABLES = 16
    MAX_TABLE_READS = 64

    def __init__(self, f, file_size: int):
        head = _read(f, 0, 104)
        if head[:4] != MAGIC or len(head) < 72:
            raise base.NotPlain('not a qcow2 image')
        (_magic, version, backing_offset, _bs, cluster_bits, size, crypt,
         l1_size, l1_offset) = _unpack('>4sIQIIQIIQ', head)
        incompat = (_unpack('>Q', head, 72)[0]
                    if version == 3 and len(head) >= 80 else 0)
        # A compression type other than zlib (0) sets this bit.
        self._zlib = not incompat & QCOW2_INCOMPAT_COMPRESSION
        if (version not in (2, 3) or not 9 <= cluster_bits <= 21 or crypt
                or backing_offset or incompat & (QCOW2_INCOMPAT_DATA_FILE
                                                 | QCOW2_INCOMPAT_EXTL2)
                or l1_size > self.MAX_L1
                or l1_offset + l1_size * 8 > file_size):
            raise base.NotPlain('an unusual qcow2 header')
        self._f = f
        self._file_size = file_size
        self.size = size
        self._bits = cluster_bits
        self._cluster = 1 << cluster_bits
        self._entries = self._cluster // 8
        self._l1 = _uint64s(_read(f, l1_offset, l1_size * 8))
        self._tables = binary.Recent(self.CACHED_TABLES)
        self._inflated = binary.Recent(self.CACHED_TABLES)
        #: L2 tables read so far.
        self.tables_read = 0
        self._map = binary.BlockMapBytes(f, size, self._cluster,
                                         self._locate)

    def _l2(self, offset: int):
        def load():
            if offset + self._cluster > self._file_size:
                raise base.NotPlain('an L2 table past the end of the file')
            self.tables_read += 1
            if self.tables_read > self.MAX_TABLE_READS:
                raise base.NotPlain('more L2 tables than a guest\'s '
                                    'reading needs')
            return _uint64s(_read(self._f, offset, self._cluster))
        return self._tables.get(offset, load)

    def _locate(self, index: int) -> int | None:
        l1_index, l2_index = divmod(index, self._entries)
        table_at = (self._l1[l1_index] & QCOW2_L2_OFFSET
                    if l1_index < len(self._l1) else 0)
        entry = self._l2(table_at)[l2_index] if table_at else 0
        if entry & (1 << 62):
            return self._inflate(entry)
        host = entry & QCOW2_L2_OFFSET
        return None if entry & QCOW2_ZERO or not host else host

    def _inflate(self, entry: int) -> bytes:
        """A compressed cluster's bytes: its descriptor holds the host
        offset in the low ``62 - (cluster_bits - 8)`` bits and the count
        of 512-byte sectors it spans, less one, above them; the data is a
        raw deflate stream with a 4 KiB window."""
        if not self._zlib:
            raise base.NotPlain('a cluster compressed with zstd')
        shift = 62 - (self._bits - 8)
        host = entry & ((1 << shift) - 1)
        sectors = ((entry >> shift) & ((1 << (self._bits - 8)) - 1)) + 1
        return self._inflated.get(host, lambda: binary.inflate(
            _read(self._f, host, sectors * 512 - (host & 511)),
            self._cluster, -12))

    def read(self, offset: int, length: int) -> bytes:
        """``length`` guest bytes at ``offset`` (fewer at the end)."""
        return self._map.read(offset, length)


DATA_FILE = safety.Check(
    'data_file', 'qcow2 images with an external data file are not allowed',
    'no qcow2 external data file: neither the incompatible bit nor the '
    'header extension, data_file_raw or not',
    (safety.BYTES, safety.INFO), 'no external data file',
    advisory='OSSA-2024-001 / CVE-2024-32498; qemu CVE-2024-4467',
    formats=('qcow2',), inspector_checks=('data_file',))
FEATURES = safety.Check(
    'qcow2_features', 'the image uses unsupported qcow2 features',
    'no qcow2 incompatible feature bits whose meaning we cannot check',
    (safety.BYTES,), 'no unknown qcow2 features', formats=('qcow2',),
    inspector_checks=('unknown_features',))


def check_header(h: Header, policy) -> None:
    if h.data_file:
        DATA_FILE.reject('data file %r' % h.data_file)
    if h.unknown_features:
        FEATURES.reject('incompatible feature bits %#x' % h.unknown_features)


def check_info(info: dict, policy) -> None:
    specific = (info.get('format-specific') or {}).get('data') or {}
    if specific.get('data-file') or specific.get('data-file-raw'):
        DATA_FILE.reject('data-file %r' % specific.get('data-file'))


def _qcow2_options(group) -> tuple[dict, bool]:
    opts: dict = {'compat': group.qcow2_compat}
    if group.qcow2_cluster_size != base.DEFAULT_CLUSTER:
        opts['cluster_size'] = group.qcow2_cluster_size
    compressed = group.qcow2_compression != 'none'
    # zlib is qemu's default; zstd needs compat 1.1.
    if group.qcow2_compression == 'zstd':
        opts['compression_type'] = 'zstd'
    if group.preallocation != 'off':
        opts['preallocation'] = group.preallocation
    return opts, compressed


def _qcow2_problems(group, glance) -> list[base.Problem]:
    found = []
    compression = group.qcow2_compression
    if compression != 'none' and group.preallocation != 'off':
        found.append(base.Problem(
            'qcow2_compression = %s cannot be combined with preallocation '
            '= %s (qemu-img refuses).' % (compression, group.preallocation),
            'set preallocation = off or qcow2_compression = none.'))
    if compression == 'zstd' and group.qcow2_compat == '0.10':
        found.append(base.Problem(
            'qcow2_compression = zstd needs qcow2_compat = 1.1.',
            'set qcow2_compat = 1.1 or qcow2_compression = zlib.'))
    if compression != 'none' and group.convert_out_of_order:
        found.append(base.Problem(
            'convert_out_of_order is ignored: compressed qcow2 output is '
            'always written in order.',
            'set convert_out_of_order = false to make that explicit.',
            warning=True))
    return found


def _qcow2_rewrites(opts: dict, compressed: bool) -> bool:
    """Compressing, preallocating or a non-default cluster size;
    ``qcow2_compat`` alone is no reason (1.1 reads everywhere)."""
    return (compressed or bool(opts.get('preallocation'))
            or 'cluster_size' in opts)


def _qcow2_bound(virtual_size: int, opts: dict) -> int:
    """About 10 bytes of L2 and refcount entries per cluster plus a few
    clusters: 16 bytes per cluster covers it with room."""
    cluster = int(opts.get('cluster_size') or base.DEFAULT_CLUSTER)
    metadata = max(virtual_size * 16 // cluster, virtual_size // 64)
    return base.bound(virtual_size, metadata, cluster)


FORMAT = base.Format(
    'qcow2', qemu_driver='qcow2', inspector='qcow2', checkable=True,
    description='QEMU copy-on-write; see the qcow2_* options.',
    option_names=('qcow2_compat', 'qcow2_cluster_size', 'qcow2_compression'),
    output_options=_qcow2_options,
    preallocation=('metadata', 'falloc', 'full'),
    option_problems=_qcow2_problems, rewrites_same_format=_qcow2_rewrites,
    upper_bound=_qcow2_bound,
    measure_as_qcow2=lambda opts: opts,  # measured as itself
    # -W helped qcow2 output cold and warm in the benchmark; raw output
    # not consistently.
    out_of_order=True, output_size_from=base.HEADER,
    # Distribution cloud images: zlib or zstd compressed clusters.
    compressed_clusters=True, out_of_order_decompressing=True,
    has_magic=has_magic, parse=parse, checks=(DATA_FILE, FEATURES),
    check_header=check_header, check_info=check_info,
    work_map=qcow2_work_map, guest_bytes=GuestBytes)
