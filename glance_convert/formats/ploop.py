"""ploop (qemu-img: ``parallels``): Virtuozzo's and Parallels' disk format.

Glance lists it in its default ``disk_formats``, but oslo.utils'
format_inspector has no inspector for it, so its bytes read as raw there
and everything is judged from this parser.  A 64-byte header, then the
block allocation table (BAT): one 32-bit entry per cluster of the guest
disk, the cluster's place in the file, 0 for unallocated.  qemu 7.2
opens an image whose BAT points beyond the end of the file (it reads
zeros there) or whose header states a size the BAT cannot hold (the
rest reads as zeros), and ``qemu-img check`` reports neither the second
nor a cluster used twice; so the parser checks them all.  Layout:
qemu's ``block/parallels.c`` and ``docs/interop/parallels.txt``.
"""

from __future__ import annotations

from glance_convert import safety
from glance_convert import units
from glance_convert.formats import base
from glance_convert.formats import binary

#: qemu-img writes the second; with the first, BAT entries count sectors
#: and only the low 32 bits of the size are read.
MAGIC_SECTORS = b'WithoutFreeSpace'
MAGIC = b'WithouFreSpacExt'
VERSION = 2
HEADER_SIZE = 64
#: ``inuse`` while an image is open for writing: it was not closed.
IN_USE = 0x746f6e59
#: BAT entries read at most (256 MiB of BAT: 256 TiB at 1 MiB clusters).
MAX_BAT_ENTRIES = 1 << 26
#: qemu refuses clusters of more sectors than this.
MAX_CLUSTER_SECTORS = 0x7fffffff // 513


IN_USE_CHECK = safety.Check(
    'ploop_in_use', 'the ploop image was not closed cleanly',
    'the ploop header is not marked in use: an image still open for writing '
    'when it was copied may hold a BAT that does not match its data',
    (safety.BYTES,), 'the ploop image was closed cleanly',
    formats=('ploop',))


def has_magic(f, file_size: int) -> bool:
    return binary.read(f, 0, 16) in (MAGIC, MAGIC_SECTORS)


def parse(f, file_size: int) -> base.Header | None:
    head = binary.read(f, 0, HEADER_SIZE)
    magic = head[:16]
    if magic not in (MAGIC, MAGIC_SECTORS):
        return None
    (version, _heads, _cylinders, cluster_sectors, entries, sectors, in_use,
     data_off, _flags, ext_off) = binary.unpack('<IIIIIQIIIQ', head, 16)
    if version != VERSION:
        raise base.Malformed('ploop version %d' % version)
    if not 0 < cluster_sectors <= MAX_CLUSTER_SECTORS:
        raise base.Malformed('ploop cluster of %d sectors' % cluster_sectors)
    cluster = cluster_sectors * binary.SECTOR
    # qemu: entries count clusters with the new magic, sectors with the old
    # one, which also has a 32-bit size.
    unit = cluster if magic == MAGIC else binary.SECTOR
    size = (sectors if magic == MAGIC else sectors & 0xffffffff)
    size *= binary.SECTOR
    h = base.Header('ploop', virtual_size=size, qemu_sizes=(size,),
                    sizes={'header': sectors * binary.SECTOR})
    # Guest bytes the BAT can address: qemu reads zeros beyond it.
    h.sizes['BAT'] = min(size, entries * cluster)
    if in_use == IN_USE:
        h.log = 'in use'
    bat_end = HEADER_SIZE + entries * 4
    data_start = data_off * binary.SECTOR if data_off else bat_end
    if bat_end > file_size:
        h.corrupt = 'the ploop BAT lies beyond the end of the file'
        return h
    if data_start < bat_end or data_start > file_size:
        h.corrupt = 'the ploop data area starts outside the file'
        return h
    if ext_off and (ext_off * binary.SECTOR < data_start
                    or ext_off * binary.SECTOR + binary.SECTOR > file_size):
        h.corrupt = 'the ploop format extension lies outside the file'
        return h
    if entries > MAX_BAT_ENTRIES:
        raise base.Malformed('ploop BAT of %d entries' % entries)
    h.corrupt = _bat_fault(binary.read(f, HEADER_SIZE, entries * 4), unit,
                           cluster, data_start, file_size)
    return h


def _bat_fault(bat: bytes, unit: int, cluster: int, data_start: int,
               file_size: int) -> str | None:
    """Why the BAT is not one a writer leaves, or None.

    Every allocated cluster lies whole in the data area, and no two guest
    clusters share one: qemu would read zeros, or the header, or the same
    data twice.
    """
    seen = set()
    for entry in binary.uint32s(bat):
        if not entry:
            continue
        offset = entry * unit
        if offset < data_start or offset + cluster > file_size:
            return 'a ploop cluster lies outside the data area of the file'
        if entry in seen:
            return 'two ploop clusters share one place in the file'
        seen.add(entry)
    return None


def check_header(h: base.Header, policy) -> None:
    if h.log:
        IN_USE_CHECK.reject('ploop header %s' % h.log)


#: While it writes, qemu's parallels driver grows the file by this much
#: beyond the clusters it needs (its ``prealloc-size``, zeros allocated
#: with fallocate) and cuts it back when it closes the image.
QEMU_PREALLOCATION = 128 * units.MiB


def _upper_bound(virtual_size: int, opts: dict) -> int:
    """Whole 1 MiB clusters (qemu-img's default), the BAT rounded up to
    clusters, the driver's preallocation while it writes, and room."""
    clusters = -(-virtual_size // units.MiB)
    bat = -(-(HEADER_SIZE + clusters * 4) // units.MiB) * units.MiB
    return (clusters * units.MiB + bat + QEMU_PREALLOCATION
            + 16 * units.MiB)


def guest_bytes(f, file_size: int) -> binary.BlockMapBytes:
    """The guest's bytes through the BAT (:class:`NotPlain` for an image
    :func:`parse` finds damaged or still in use)."""
    h = parse(f, file_size)
    if h is None or h.corrupt or h.log or h.parent:
        raise base.NotPlain('not a plain ploop image')
    head = binary.read(f, 0, HEADER_SIZE)
    magic = head[:16]
    cluster_sectors, entries = binary.unpack('<II', head, 28)
    cluster = cluster_sectors * binary.SECTOR
    unit = cluster if magic == MAGIC else binary.SECTOR

    def locate(index: int) -> int | None:
        if index >= entries:
            return None
        at = binary.entry(f, HEADER_SIZE, index, '<I')
        return at * unit if at else None
    return binary.BlockMapBytes(f, h.virtual_size, cluster, locate)


FORMAT = base.Format(
    'ploop', qemu_driver='parallels', inspector=None, checkable=True,
    description='Virtuozzo/Parallels ploop (qemu-img "parallels").',
    option_names=(), output_options=lambda group: ({}, False),
    upper_bound=_upper_bound,
    # format_inspector knows no ploop: every ploop reads as raw there.
    may_read_as_raw=True, raw_lookalike=lambda header: True,
    has_magic=has_magic, parse=parse, checks=(IN_USE_CHECK,),
    check_header=check_header, guest_bytes=guest_bytes)
