"""VMDK: VMware's format, whose descriptor can name other files.

A descriptor's extents are files qemu opens (CVE-2022-47951), so only a
monolithic sparse or stream-optimized VMDK whose one extent is itself is
converted, with the create types Glance's ``[image_format]
vmdk_allowed_types`` allows.  Layout: VMware Virtual Disk Format 1.1 and
qemu's ``block/vmdk.c``.
"""

from __future__ import annotations

import os
import re
import zlib

from glance_convert import safety
from glance_convert.formats import base
from glance_convert.formats import binary
from glance_convert.formats.base import Header
from glance_convert.formats.base import Malformed
from glance_convert.formats.binary import SECTOR
from glance_convert.guest.hints import Hints

_read = binary.read
_unpack = binary.unpack
_uint32s = binary.uint32s

#: A sparse extent's header; ``COWD`` is the VMDK3 one, which is refused.
MAGIC = b'KDMV'
VMDK3_MAGIC = b'COWD'

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
    if footer[0] != MAGIC:
        raise Malformed('stream-optimized VMDK footer missing')
    return footer


def _sparse_header(data: bytes) -> tuple:
    # magic, version, flags, capacity, grain, desc_offset, desc_size,
    # num_gtes_per_gt, rgd_offset, gd_offset
    return _unpack('<4sIIQQQQIQQ', data)


def parse(f, file_size: int) -> Header | None:
    head = _read(f, 0, SECTOR)
    if head[:4] == VMDK3_MAGIC:
        raise Malformed('VMDK3 (COWD) sparse extents are not supported')
    if head[:4] != MAGIC:
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


def has_magic(f, file_size: int) -> bool:
    head = _read(f, 0, 4)
    return head in (MAGIC, VMDK3_MAGIC) or head.startswith(b'#')


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
    if head[:4] != MAGIC:
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


VMDK_FLAG_COMPRESSED = 1 << 16


class GuestBytes:
    """The guest's bytes of a hosted sparse VMDK (monolithicSparse or
    streamOptimized), through its grain directory and tables.

    Like :class:`glance_convert.formats.qcow2.GuestBytes`: for an image
    already checked, a few guest sectors for microseconds instead of a
    qemu-img start per chunk.  Compressed grains (streamOptimized) are
    inflated one at a time, each bounded to one grain.  Anything else (a
    descriptor file naming extents, tables out of bounds) raises
    :class:`~glance_convert.formats.base.NotPlain`.  Layout: VMware's
    "Virtual Disk Format 5.0".
    """

    MAX_TABLE_READS = 64
    CACHED = 16

    def __init__(self, f, file_size: int):
        head = _read(f, 0, SECTOR)
        if head[:4] != MAGIC:
            raise base.NotPlain('not a sparse VMDK')
        fields = _sparse_header(head)
        if fields[9] == VMDK_GD_AT_END:
            try:
                fields = _vmdk_footer(f, file_size)
            except Malformed as exc:
                raise base.NotPlain(str(exc))
        _m, _v, flags, capacity, grain, _ds, _dn, gtes, _rgd, gd = fields
        tables = -(-capacity // (gtes * grain)) if grain and gtes else 0
        if (not tables or gtes > VMDK_MAX_GTES or tables > VMDK_MAX_TABLES
                or grain > 2048 or gd * SECTOR + tables * 4 > file_size):
            raise base.NotPlain('an unusual sparse VMDK header')
        self._f = f
        self._file_size = file_size
        self.size = capacity * SECTOR
        self._grain = grain * SECTOR
        self._gtes = gtes
        self._compressed = bool(flags & VMDK_FLAG_COMPRESSED)
        self._zeroed = bool(flags & VMDK_FLAG_ZEROED_GRAINS)
        self._directory = _uint32s(_read(f, gd * SECTOR, tables * 4))
        self._tables = binary.Recent(self.CACHED)
        self._grains = binary.Recent(self.CACHED)
        #: Grain tables read so far.
        self.tables_read = 0
        self._map = binary.BlockMapBytes(f, self.size, self._grain,
                                         self._locate)

    def _table(self, sector: int):
        def load():
            self.tables_read += 1
            if self.tables_read > self.MAX_TABLE_READS:
                raise base.NotPlain('more grain tables than a guest\'s '
                                    'reading needs')
            entries = _uint32s(_read(self._f, sector * SECTOR,
                                     self._gtes * 4))
            if len(entries) < self._gtes:
                raise base.NotPlain('a grain table past the end')
            return entries
        return self._tables.get(sector, load)

    def _inflated(self, sector: int) -> bytes:
        def load():
            # A grain marker: its guest sector (8 bytes), the compressed
            # size (4), then the deflate stream.
            marker = _read(self._f, sector * SECTOR, 12)
            if len(marker) < 12:
                raise base.NotPlain('a grain past the end')
            size = _unpack('<QI', marker)[1]
            if size > 2 * self._grain:
                raise base.NotPlain('a compressed grain larger than a grain')
            return binary.inflate(_read(self._f, sector * SECTOR + 12, size),
                                  self._grain, zlib.MAX_WBITS)
        return self._grains.get(sector, load)

    def _locate(self, index: int) -> int | bytes | None:
        table, entry = divmod(index, self._gtes)
        sector = self._directory[table] if table < len(
            self._directory) else 0
        grain = self._table(sector)[entry] if sector else 0
        if grain == 0 or (grain == 1 and self._zeroed):
            return None
        if self._compressed:
            return self._inflated(grain)
        return grain * SECTOR

    def read(self, offset: int, length: int) -> bytes:
        """``length`` guest bytes at ``offset`` (fewer at the end)."""
        return self._map.read(offset, length)


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


#: The most descriptor read for :func:`hints`.  Real ones are under a
#: KiB of text (qemu reserves 20 sectors for the embedded one).
MAX_HINT_DESCRIPTOR = 64 * 1024
_DDB_LINE = re.compile(
    r'^\s*(ddb\.[A-Za-z0-9.]{1,64})\s*=\s*"([^"]{0,64})"\s*$', re.I)
#: ddb.adapterType (qemu's adapter_type option, VMware's lsisas1068 and
#: pvscsi) -> (Hints.disk_controller, Hints.disk_model).  legacyESX names
#: no model qemu or VMware document.
_ADAPTERS = {
    'ide': ('ide', None), 'buslogic': ('scsi', 'buslogic'),
    'lsilogic': ('scsi', 'lsilogic'), 'legacyesx': ('scsi', None),
    'lsisas1068': ('scsi', 'lsisas1068'), 'pvscsi': ('scsi', 'vmpvscsi'),
}


def _hint_text(f, file_size: int) -> str | None:
    head = _read(f, 0, SECTOR)
    if head[:4] == MAGIC:
        fields = _sparse_header(head)
        start, length = fields[5] * SECTOR, fields[6] * SECTOR
        if not start or not length or length > MAX_HINT_DESCRIPTOR \
                or start + length > file_size:
            return None
        raw = _read(f, start, length)
    elif head.startswith(b'#') and file_size <= MAX_HINT_DESCRIPTOR:
        raw = _read(f, 0, file_size)
    else:
        return None
    try:
        return raw.split(b'\0', 1)[0].decode('ascii')
    except UnicodeDecodeError:
        return None


def hints(f, file_size: int) -> Hints | None:
    """What a VMDK's descriptor says about its guest's hardware.

    The descriptor file itself, or the one embedded in a monolithicSparse
    or streamOptimized extent.  ``ddb.adapterType`` names the disk's
    controller; ``ddb.virtualHWVersion`` is kept for the record (qemu
    always writes 4; it says nothing of the firmware).  Descriptors carry
    no guest OS.  A descriptor that is not small ASCII text, or that
    repeats a ddb key, gives None, never an error.
    """
    try:
        text = _hint_text(f, file_size)
    except Malformed:
        return None
    if text is None:
        return None
    ddb = {}
    for line in text.splitlines():
        found = _DDB_LINE.match(line)
        key = found.group(1).lower() if found else None
        if key in ddb:
            return None
        if key:
            ddb[key] = found.group(2).strip()
    out, said = {}, []
    adapter = ddb.get('ddb.adaptertype', '')
    if adapter.lower() in _ADAPTERS:
        out['disk_controller'], out['disk_model'] = \
            _ADAPTERS[adapter.lower()]
        said.append('ddb.adapterType=%s' % adapter)
    version = ddb.get('ddb.virtualhwversion', '')
    if version.isdigit() and len(version) < 4:
        said.append('ddb.virtualHWVersion=%s' % version)
    if not said:
        return None
    return Hints(source='vmdk descriptor', said=tuple(said), **out)


CREATE_TYPE = safety.Check(
    'vmdk_create_type', 'VMDK create type "{create_type}" is not allowed',
    'the VMDK create type qemu reads is in [image_format] '
    'vmdk_allowed_types, compared case-sensitively',
    (safety.BYTES, safety.INFO), 'the VMDK create type is allowed by '
    '[image_format] vmdk_allowed_types',
    advisory='OSSA-2023-002 / CVE-2022-47951', formats=('vmdk',))
EXTENTS = safety.Check(
    'vmdk_extents', 'VMDK images that refer to other files are not allowed',
    'one SPARSE extent, inside the file itself: no descriptor-only VMDK, '
    'no extent with a path, no second extent',
    (safety.BYTES, safety.INFO), 'the VMDK refers to no other file',
    advisory='OSSA-2023-002 / CVE-2022-47951', formats=('vmdk',),
    inspector_checks=('descriptor',))


def check_header(h: Header, policy) -> None:
    if h.subformat == 'descriptor':  # a text file naming other files
        EXTENTS.reject('descriptor-only VMDK')
    if h.create_type not in policy.vmdk_allowed_types:  # exact, as qemu
        CREATE_TYPE.reject(
            'createType %r, allowed %r'
            % (h.create_type, policy.vmdk_allowed_types),
            create_type=safety.shown(h.create_type))
    if h.descriptor_file or len(h.extents) != 1:
        EXTENTS.reject('extents %r' % [e[-1] for e in h.extents])
    _access, sectors, kind, name, line = h.extents[0]
    if kind != 'SPARSE' or not name or '/' in name or sectors is None:
        EXTENTS.reject('extent %r' % line)


def check_info(info: dict, policy) -> None:
    specific = (info.get('format-specific') or {}).get('data') or {}
    create_type = specific.get('create-type')
    if create_type not in policy.vmdk_allowed_types:
        CREATE_TYPE.reject('qemu-img create-type %r' % create_type,
                           create_type=safety.shown(create_type))
    own = os.path.realpath(info.get('filename', ''))
    for extent in specific.get('extents') or []:
        if os.path.realpath(extent.get('filename', '')) != own:
            EXTENTS.reject('extent %r' % extent.get('filename'))


def _vmdk_problems(group, glance) -> list[base.Problem]:
    allowed = glance('image_format', 'vmdk_allowed_types', [])
    if group.vmdk_subformat in allowed:
        return []
    return [base.Problem(
        'vmdk_subformat = %s is not in Glance\'s [image_format] '
        'vmdk_allowed_types (%s): the converted images would be refused by '
        'the next conversion or copy.'
        % (group.vmdk_subformat, ', '.join(allowed) or 'empty'),
        'add %s to vmdk_allowed_types or choose another vmdk_subformat.'
        % group.vmdk_subformat)]


FORMAT = base.Format(
    'vmdk', qemu_driver='vmdk', inspector='vmdk', checkable=True,
    description='VMware; see vmdk_subformat.',
    option_names=('vmdk_subformat',),
    output_options=lambda group: ({'subformat': group.vmdk_subformat},
                                  False),
    option_problems=_vmdk_problems,
    rewrites_same_format=lambda opts, compressed: (
        opts.get('subformat') == 'streamOptimized'),
    # Decompression (streamOptimized) or grain-table walking
    # (monolithicSparse, 0.9 CPU s for 819 MiB where a copy takes 0.35 s)
    # keep one qemu-img on one core; split, they took 0.49x and
    # 0.58-0.65x of the stock task's time in the benchmark.
    parallel_subformats=('streamOptimized', 'monolithicSparse'),
    has_magic=has_magic, parse=parse, checks=(CREATE_TYPE, EXTENTS),
    check_header=check_header, check_info=check_info,
    work_map=vmdk_data_by_table, guest_bytes=GuestBytes)
