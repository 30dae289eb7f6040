"""A corpus of hostile and benign disk images, generated on demand.

``build_corpus(directory)`` writes every image into ``directory`` and
returns one :class:`Case` per image with the verdict the safety policy must
reach.  Base images come from ``qemu-img create/convert`` and ``qemu-io``;
the hostile variants are made by patching bytes with :mod:`struct`, so the
corpus needs nothing beyond qemu-utils.

Cases that make qemu-img read a host file point at a *canary*: a file of
unique random bytes next to the image.  Tests assert that those bytes never
appear in any output and that qemu-img never opens the canary.  A case
carries a canary only where plain, unconfined qemu-img does open it:
``tests/hostile_proofs.py`` holds each hostile case's proof that its attack
is real, or the named reason why it has none.

Run ``python tests/hostile_corpus.py DIR`` to build the corpus by hand.
"""

import dataclasses
import json
import os
import struct
import subprocess
import sys
import zlib

MiB = 1024 * 1024

# Reason substrings: each must occur in the ImageRejected reason the policy
# gives for the case (glance_convert/inspection.py writes the sentences).
BACKING = 'backing file'
DATA_FILE = 'external data file'
CREATE_TYPE = 'VMDK create type'
EXTENTS = 'refer to other files'
DIFFERENCING = 'differencing'
ENCRYPTED = 'encrypted'
VSIZE = 'virtual size'
DISAGREE = 'disagree'
CORRUPT = 'corrupt'
MISMATCH = 'as claimed'
MULTIPLE = 'more than one format'
EMPTY = 'empty'
UNREADABLE = 'too short or damaged'
FEATURES = 'unsupported qcow2 features'
HIDDEN = 'hides another disk image'
PARTITIONS = 'partition table'
VHDX_LOG = 'not closed cleanly'
VHDX_REQUIRED = 'requires regions or metadata'
PLOOP_IN_USE = 'ploop image was not closed cleanly'


@dataclasses.dataclass
class Case:
    name: str
    path: str
    claimed_format: str
    expected: str  # 'accept' or 'reject'
    reason_substring: str | None = None
    canary_path: str | None = None
    # Policy overrides for this case (e.g. a small max_virtual_size).
    policy: dict = dataclasses.field(default_factory=dict)
    # For accepted cases: the qemu driver and guest size to compare against.
    note: str = ''

    @property
    def hostile(self):
        return self.expected == 'reject'

    def __str__(self):
        return self.name


def pipeline_settings(target, **policy):
    """conversion.Settings for running a case through the real pipeline."""
    from glance_convert.pipeline import conversion
    from glance_convert import formats
    from glance_convert.pipeline import inspection
    from glance_convert.pipeline import qemu_img
    return conversion.Settings(
        target=target,
        source_formats=formats.CONVERTIBLE,
        keep_formats=(),
        policy=inspection.Policy(**policy),
        inspect_limits=qemu_img.Limits(address_space=1024 * MiB,
                                       cpu_time=30, timeout=60),
        convert_limits=qemu_img.Limits(address_space=2048 * MiB,
                                       timeout=120),
        tuning=qemu_img.Tuning(),
        out_options={},
        compressed=False,
        progress_interval=5.0)


#: qemu's LUKS key-slot benchmark fails when its first PBKDF2 round ends
#: within the same millisecond of thread CPU time it started in (about 1
#: create in 4 here); there is no option to give the iteration count
#: instead, so such a create is simply run again.
PBKDF_FLAKE = 'Unable to get accurate CPU usage'
PBKDF_ATTEMPTS = 20


def _run(*cmd, retry_on=None, attempts=1):
    """Run a tool; again, up to ``attempts`` times, on ``retry_on`` only."""
    for attempt in range(attempts):
        try:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
            return
        except subprocess.CalledProcessError as exc:
            stderr = exc.stderr.decode(errors='replace')
            if attempt == attempts - 1 or not (retry_on and
                                               retry_on in stderr):
                raise RuntimeError('%s failed: %s' % (' '.join(cmd), stderr))


def _qemu_io(path, fmt, *commands):
    args = ['qemu-io', '-f', fmt]
    for c in commands:
        args += ['-c', c]
    _run(*args, path)


def _patch(path, offset, data):
    with open(path, 'r+b') as f:
        f.seek(offset)
        f.write(data)


def _read(path, offset=0, length=-1):
    with open(path, 'rb') as f:
        f.seek(offset)
        return f.read(length)


def _write(path, data):
    with open(path, 'wb') as f:
        f.write(data)


def _canary(directory, name):
    """A file of unique random bytes that must never be read."""
    path = os.path.join(directory, 'canary-%s.bin' % name)
    _write(path, b'CANARY-' + os.urandom(4089))
    return path


def canary_bytes(path):
    """The bytes that identify a canary (long enough never to collide)."""
    return _read(path)[:64]


# --- qcow2 -------------------------------------------------------------------

def _qcow2(path, size='1M', *opts, data=True, fmt_opts=None):
    args = ['qemu-img', 'create', '-q', '-f', 'qcow2']
    if fmt_opts:
        args += ['-o', fmt_opts]
    _run(*args, *opts, path, size)
    if data:
        _qemu_io(path, 'qcow2', 'write -P 0x5a 0 128k',
                 'write -P 0xa5 512k 64k')
    return path


def _qcow2_header(path):
    h = _read(path, 0, 112)
    fields = struct.unpack('>4sIQIIQIIQQIIQ', h[:72])
    names = ('magic', 'version', 'backing_offset', 'backing_size',
             'cluster_bits', 'size', 'crypt_method', 'l1_size', 'l1_offset',
             'refcount_offset', 'refcount_clusters', 'nb_snapshots',
             'snapshots_offset')
    return dict(zip(names, fields))


def _set_incompat_bit(path, bit):
    (features,) = struct.unpack('>Q', _read(path, 72, 8))
    _patch(path, 72, struct.pack('>Q', features | (1 << bit)))


def _backing(directory, name, backing, fmt='raw'):
    path = os.path.join(directory, name + '.qcow2')
    # -u: do not open the backing file while creating.
    _run('qemu-img', 'create', '-q', '-f', 'qcow2', '-u', '-b', backing,
         '-F', fmt, path, '1M')
    return path


def _first_l2_offset(path):
    h = _qcow2_header(path)
    (l1e,) = struct.unpack('>Q', _read(path, h['l1_offset'], 8))
    return l1e & 0x00fffffffffffe00, 1 << h['cluster_bits']


# --- vmdk --------------------------------------------------------------------

def _vmdk(path, subformat, size='1M', src=None):
    if src:
        _run('qemu-img', 'convert', '-f', 'qcow2', '-O', 'vmdk', '-o',
             'subformat=' + subformat, src, path)
    else:
        _run('qemu-img', 'create', '-q', '-f', 'vmdk', '-o',
             'subformat=' + subformat, path, size)
    return path


def _vmdk_descriptor(path):
    h = _read(path, 0, 64)
    desc_sector, desc_sectors = struct.unpack('<QQ', h[28:44])
    raw = _read(path, desc_sector * 512, desc_sectors * 512)
    return raw.split(b'\0', 1)[0].decode('ascii'), desc_sector, desc_sectors


def _set_vmdk_descriptor(path, text):
    _old, sector, sectors = _vmdk_descriptor(path)
    data = text.encode('ascii')
    assert len(data) < sectors * 512, 'descriptor too long'
    _patch(path, sector * 512, data.ljust(sectors * 512, b'\0'))


def _edit_vmdk_descriptor(path, old, new):
    text, _s, _n = _vmdk_descriptor(path)
    assert old in text, (old, text)
    _set_vmdk_descriptor(path, text.replace(old, new))


def _text_vmdk(path, create_type, extent_lines, extra=''):
    text = ('# Disk DescriptorFile\nversion=1\nCID=12345678\n'
            'parentCID=ffffffff\ncreateType="%s"\n%s\n# Extent description\n'
            '%s\n\nddb.virtualHWVersion = "4"\nddb.adapterType = "ide"\n'
            % (create_type, extra, '\n'.join(extent_lines)))
    _write(path, text.encode('ascii'))
    return path


# --- vhd / vdi ---------------------------------------------------------------

def _vhd_checksum(footer):
    footer = bytearray(footer)
    footer[64:68] = b'\0\0\0\0'
    return struct.pack('>I', (~sum(footer)) & 0xffffffff)


def _patch_vhd_footer(path, offset, changes):
    footer = bytearray(_read(path, offset, 512))
    for field_offset, data in changes:
        footer[field_offset:field_offset + len(data)] = data
    footer[64:68] = _vhd_checksum(footer)
    _patch(path, offset, bytes(footer))


def _vhd_footer_offsets(path):
    size = os.path.getsize(path)
    offsets = [size - 512]
    if _read(path, 0, 8) == b'conectix':
        offsets.append(0)
    return offsets


def _vdi(path, static, src=None):
    opts = 'static=%s' % ('on' if static else 'off')
    if src:
        _run('qemu-img', 'convert', '-f', 'qcow2', '-O', 'vdi', '-o', opts,
             src, path)
    else:
        _run('qemu-img', 'create', '-q', '-f', 'vdi', '-o', opts, path, '1M')
    return path


# --- vhdx (MS-VHDX) ---------------------------------------------------------

VHDX_HEADERS = (64 * 1024, 128 * 1024)
VHDX_REGION_TABLES = (192 * 1024, 256 * 1024)
VHDX_FILE_PARAMETERS = '3767a1ca36fa434db3b633f0aa44e76b'
VHDX_VIRTUAL_DISK_SIZE = '2442a52f1bcd7648b2115dbed83bf4b8'
VHDX_PARENT_LOCATOR = '2d5fd3a80bb34d45abf7d3d84834ab0c'
VHDX_METADATA_REGION = '06a27c8b90479a4bb8fe575f050f886e'
VHDX_BAT_REGION = '6677c22d23f600429d64115e9bfd4a08'


def _crc32c(data):
    """CRC-32C, bit by bit: independent of the parser's table version."""
    crc = 0xffffffff
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82f63b78 if crc & 1 else 0)
    return crc ^ 0xffffffff


def _vhdx_checksum(path, offset, size):
    """Recompute the CRC-32C at ``offset + 4`` of a header or table."""
    block = bytearray(_read(path, offset, size))
    block[4:8] = b'\0\0\0\0'
    _patch(path, offset + 4, struct.pack('<I', _crc32c(block)))


def _vhdx(path, src, subformat='dynamic'):
    _run('qemu-img', 'convert', '-f', 'qcow2', '-O', 'vhdx', '-o',
         'subformat=' + subformat, src, path)
    return path


def _vhdx_current_header(path):
    """Offset of the header qemu uses (the higher sequence number)."""
    return max(VHDX_HEADERS, key=lambda offset: struct.unpack(
        '<Q', _read(path, offset + 8, 8))[0])


def _vhdx_regions(path):
    """{GUID hex: (offset, length)} from region table 1."""
    count, = struct.unpack('<I', _read(path, VHDX_REGION_TABLES[0] + 8, 4))
    out = {}
    for index in range(count):
        entry = _read(path, VHDX_REGION_TABLES[0] + 16 + 32 * index, 32)
        offset, length = struct.unpack('<QI', entry[16:28])
        out[entry[:16].hex()] = (offset, length)
    return out


def _vhdx_set_regions(path, entries, tables=VHDX_REGION_TABLES):
    """Rewrite region tables: ``entries`` of (GUID hex, offset, length,
    required)."""
    data = struct.pack('<I', len(entries)) + b'\0' * 4 + b''.join(
        bytes.fromhex(guid) + struct.pack('<QII', offset, length, required)
        for guid, offset, length, required in entries)
    for table in tables:
        _patch(path, table + 8, data)
        _vhdx_checksum(path, table, 64 * 1024)


def _vhdx_metadata_entries(path):
    """[(entry offset in the file, GUID hex, item offset, length, flags)]."""
    md, _length = _vhdx_regions(path)[VHDX_METADATA_REGION]
    count, = struct.unpack('<H', _read(path, md + 10, 2))
    out = []
    for index in range(count):
        at = md + 32 + 32 * index
        entry = _read(path, at, 32)
        out.append((at, entry[:16].hex()) + struct.unpack('<III',
                                                          entry[16:28]))
    return out


def _vhdx_add_metadata(path, guid, offset, data, flags):
    """Append a metadata item (and its table entry)."""
    md, _length = _vhdx_regions(path)[VHDX_METADATA_REGION]
    count, = struct.unpack('<H', _read(path, md + 10, 2))
    _patch(path, md + 32 + 32 * count, bytes.fromhex(guid) + struct.pack(
        '<IIII', offset, len(data), flags, 0))
    _patch(path, md + 10, struct.pack('<H', count + 1))
    _patch(path, md + offset, data)


def _vhdx_item(path, guid):
    md, _length = _vhdx_regions(path)[VHDX_METADATA_REGION]
    entry = next(e for e in _vhdx_metadata_entries(path) if e[1] == guid)
    return entry, md + entry[2]


def _vhdx_parent_locator(parent):
    """A VHDX parent locator naming ``parent`` (key/value, UTF-16)."""
    pairs = [('parent_linkage', '{%s}' % '12345678-1234-1234-1234-'
              '123456789abc'), ('relative_path', parent),
             ('absolute_win32_path', parent)]
    head = 20 + 12 * len(pairs)
    blobs, entries = b'', b''
    for key, value in pairs:
        key, value = key.encode('utf-16-le'), value.encode('utf-16-le')
        entries += struct.pack('<IIHH', head + len(blobs),
                               head + len(blobs) + len(key), len(key),
                               len(value))
        blobs += key + value
    locator_type = 'b7ef4ab09ed1814ab78925b8e9445913'  # VHDX parent
    return (bytes.fromhex(locator_type) + struct.pack('<HH', 0, len(pairs))
            + entries + blobs)


def vhdx_needing_log_replay(path, src):
    """A VHDX of qcow2 ``src`` with a log that qemu replays.

    Replaying it zeroes the first 64 KiB of the first data block, so the
    disk depends on whether the reader replays the log.
    """
    _vhdx(path, src)
    header = _vhdx_current_header(path)
    log_guid = os.urandom(16)
    _patch(path, header + 48, log_guid)
    _vhdx_checksum(path, header, 4096)
    _length, log_offset = struct.unpack('<IQ', _read(path, header + 68, 12))
    bat, _length = _vhdx_regions(path)[VHDX_BAT_REGION]
    (first_block,) = struct.unpack('<Q', _read(path, bat, 8))
    _patch(path, log_offset, _vhdx_log_entry(
        log_guid, 1, (first_block >> 20) << 20, 64 * 1024,
        os.path.getsize(path)))
    return path


def _vhdx_log_entry(log_guid, sequence, zero_offset, zero_length,
                    file_size):
    """One 4 KiB log entry whose only descriptor zeroes a file range.

    Replaying it writes zeros over ``zero_length`` bytes at
    ``zero_offset`` of the file: what a reader sees then depends on
    whether it replays the log.
    """
    entry = bytearray(4096)
    struct.pack_into('<4sIIIQII16sQQ', entry, 0, b'loge', 0, 4096, 0,
                     sequence, 1, 0, log_guid, file_size, file_size)
    struct.pack_into('<4sIQQQ', entry, 64, b'zero', 0, zero_length,
                     zero_offset, sequence)
    struct.pack_into('<I', entry, 4, _crc32c(entry))
    return bytes(entry)


# --- raw disks ---------------------------------------------------------------

def _mbr_entry(boot, ptype, start, count):
    # CHS fields are legacy; 0xfe/0xff/0xff means "use LBA".
    return struct.pack('<B3BB3BII', boot, 0xfe, 0xff, 0xff, ptype,
                       0xfe, 0xff, 0xff, start, count)


def _mbr_disk(path, size=2 * MiB, boot=0x80):
    sectors = size // 512
    data = bytearray(size)
    data[446:462] = _mbr_entry(boot, 0x83, 2048 if sectors > 4096 else 1,
                               sectors - (2048 if sectors > 4096 else 1))
    data[510:512] = b'\x55\xaa'
    data[1024:1024 + 16] = b'guest-data-mbr!!'
    _write(path, data)
    return path


def _gpt_disk(path, size=2 * MiB):
    """A protective MBR plus primary and backup GPT, one partition."""
    sectors = size // 512
    data = bytearray(size)
    # Protective MBR: one 0xEE partition from LBA 1, start CHS 0/2/0.
    data[446:462] = struct.pack('<B3BB3BII', 0, 0x00, 0x02, 0x00, 0xee,
                                0xfe, 0xff, 0xff, 1, sectors - 1)
    data[510:512] = b'\x55\xaa'
    entry = struct.pack(
        '<16s16sQQQ72s',
        bytes.fromhex('af3dc60f838472478e793d69d8477de4'),  # linux data
        os.urandom(16), 34, sectors - 34, 0,
        'root'.encode('utf-16-le').ljust(72, b'\0'))
    entries = entry.ljust(128 * 128, b'\0')
    entries_crc = zlib.crc32(entries)

    def header(current, backup, entries_lba):
        fields = [b'EFI PART', 0x00010000, 92, 0, 0, current, backup,
                  34, sectors - 34, os.urandom(16), entries_lba, 128, 128,
                  entries_crc]
        fmt = '<8sIIIIQQQQ16sQIII'
        raw = struct.pack(fmt, *fields)
        fields[3] = zlib.crc32(raw)
        return struct.pack(fmt, *fields).ljust(512, b'\0')

    data[512:1024] = header(1, sectors - 1, 2)
    data[1024:1024 + len(entries)] = entries
    data[(sectors - 33) * 512:(sectors - 1) * 512] = entries
    data[(sectors - 1) * 512:] = header(sectors - 1, 1, sectors - 33)
    data[34 * 512:34 * 512 + 16] = b'guest-data-gpt!!'
    _write(path, data)
    return path


def _iso(path, blocks=32):
    """A minimal ISO 9660 image: system area, a PVD and a terminator."""
    data = bytearray(blocks * 2048)
    pvd = bytearray(2048)
    pvd[0:7] = b'\x01CD001\x01'
    pvd[40:72] = b'GLANCE_CONVERT_TEST'.ljust(32)
    pvd[80:88] = struct.pack('<I', blocks) + struct.pack('>I', blocks)
    pvd[120:124] = struct.pack('<H', 1) + struct.pack('>H', 1)
    pvd[124:128] = struct.pack('<H', 1) + struct.pack('>H', 1)
    pvd[128:132] = struct.pack('<H', 2048) + struct.pack('>H', 2048)
    pvd[881] = 1
    data[16 * 2048:17 * 2048] = pvd
    data[17 * 2048:17 * 2048 + 7] = b'\xffCD001\x01'
    _write(path, data)
    return path


# --- the corpus --------------------------------------------------------------

PLOOP_MAGIC_SECTORS = b'WithoutFreeSpace'
PLOOP_IN_USE_MAGIC = 0x746f6e59


def _ploop(path, src, cluster='64k'):
    """A ploop (qemu: parallels) of ``src``, clusters of ``cluster``."""
    _run('qemu-img', 'convert', '-f', 'qcow2', '-O', 'parallels', '-o',
         'cluster_size=%s' % cluster, src, path)
    return path


def _ploop_header(path):
    """(cluster sectors, BAT entries, sectors, BAT) of a ploop."""
    tracks, entries, sectors = struct.unpack('<IIQ', _read(path, 28, 16))
    bat = struct.unpack('<%dI' % entries, _read(path, 64, entries * 4))
    return tracks, entries, sectors, bat


def _ploop_with_old_magic(path, src):
    """The older ploop header: its BAT counts sectors, not clusters."""
    _ploop(path, src)
    tracks, entries, _sectors, bat = _ploop_header(path)
    _patch(path, 0, PLOOP_MAGIC_SECTORS)
    _patch(path, 64, struct.pack('<%dI' % entries,
                                 *[e * tracks for e in bat]))
    return path


def build_corpus(directory):
    """Write every case into ``directory``; return the list of Cases."""
    os.makedirs(directory, exist_ok=True)
    d = directory

    def p(name):
        return os.path.join(d, name)

    cases = []

    def add(name, path, claimed, expected, reason=None, canary=None,
            **policy):
        cases.append(Case(name, path, claimed, expected, reason, canary,
                          policy))

    plain = _qcow2(p('plain.qcow2'))

    # ---------------- benign edge cases ----------------
    add('qcow2_compat11', plain, 'qcow2', 'accept')
    add('qcow2_compat010', _qcow2(p('compat010.qcow2'),
                                  fmt_opts='compat=0.10'), 'qcow2', 'accept')
    zlib_c = p('zlib.qcow2')
    _run('qemu-img', 'convert', '-q', '-c', '-f', 'qcow2', '-O', 'qcow2',
         plain, zlib_c)
    add('qcow2_compressed_zlib', zlib_c, 'qcow2', 'accept')
    zstd_c = p('zstd.qcow2')
    _run('qemu-img', 'convert', '-q', '-c', '-f', 'qcow2', '-O', 'qcow2',
         '-o', 'compression_type=zstd', plain, zstd_c)
    add('qcow2_compressed_zstd', zstd_c, 'qcow2', 'accept')
    snap = _qcow2(p('snapshots.qcow2'))
    _run('qemu-img', 'snapshot', '-q', '-c', 'before', snap)
    _qemu_io(snap, 'qcow2', 'write -P 0x33 256k 64k')
    _run('qemu-img', 'snapshot', '-q', '-c', 'after', snap)
    add('qcow2_internal_snapshots', snap, 'qcow2', 'accept')
    add('vmdk_stream_optimized', _vmdk(p('stream.vmdk'), 'streamOptimized',
                                       src=plain), 'vmdk', 'accept')
    add('vmdk_monolithic_sparse', _vmdk(p('sparse.vmdk'), 'monolithicSparse',
                                        src=plain), 'vmdk', 'accept')
    fixed = p('fixed.vhd')
    _run('qemu-img', 'convert', '-f', 'qcow2', '-O', 'vpc', '-o',
         'subformat=fixed,force_size=on', plain, fixed)
    add('vhd_fixed_claimed_vhd', fixed, 'vhd', 'accept')
    dyn = p('dynamic.vhd')
    _run('qemu-img', 'convert', '-f', 'qcow2', '-O', 'vpc', '-o',
         'subformat=dynamic', plain, dyn)
    add('vhd_dynamic', dyn, 'vhd', 'accept')
    add('vdi_static', _vdi(p('static.vdi'), True, src=plain), 'vdi',
        'accept')
    add('vdi_dynamic', _vdi(p('dynamic.vdi'), False, src=plain), 'vdi',
        'accept')
    add('raw_mbr', _mbr_disk(p('mbr.raw')), 'raw', 'accept')
    add('raw_gpt', _gpt_disk(p('gpt.raw')), 'raw', 'accept')
    zeros = p('one-sector.raw')
    _write(zeros, b'\0' * 512)
    add('raw_one_sector', zeros, 'raw', 'accept')
    odd = p('odd-size.raw')
    _write(odd, b'odd-sized raw data' * 100)  # 1800 bytes
    add('raw_size_not_multiple_of_512', odd, 'raw', 'accept')
    add('iso_claimed_iso', _iso(p('disc.iso')), 'iso', 'accept')

    # ---------------- backing files (OSSA-2024-001 and older) ----------------
    c = _canary(d, 'backing-abs')
    add('qcow2_backing_absolute', _backing(d, 'backing-abs', c), 'qcow2',
        'reject', BACKING, c)
    c = _canary(d, 'backing-rel')
    add('qcow2_backing_relative',
        _backing(d, 'backing-rel', os.path.basename(c)), 'qcow2', 'reject',
        BACKING, c)
    c = _canary(d, 'backing-json')
    spec = 'json:' + json.dumps({'driver': 'raw', 'file': {
        'driver': 'file', 'filename': c}})
    add('qcow2_backing_json_spec', _backing(d, 'backing-json', spec),
        'qcow2', 'reject', BACKING, c)
    add('qcow2_backing_nbd_url',
        _backing(d, 'backing-nbd', 'nbd://127.0.0.1:1/export'), 'qcow2',
        'reject', BACKING)
    add('qcow2_backing_http_url',
        _backing(d, 'backing-http', 'http://127.0.0.1:1/disk.img'), 'qcow2',
        'reject', BACKING)
    c = _canary(d, 'backing-v2')
    path = p('backing-v2.qcow2')
    _run('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'compat=0.10',
         '-u', '-b', c, '-F', 'raw', path, '1M')
    add('qcow2_v2_backing', path, 'qcow2', 'reject', BACKING, c)

    # ---------------- external data files ----------------
    for raw_flag in ('on', 'off'):
        c = os.path.join(d, 'canary-data-file-%s.bin' % raw_flag)
        path = p('data-file-%s.qcow2' % raw_flag)
        _run('qemu-img', 'create', '-q', '-f', 'qcow2', '-o',
             'data_file=%s,data_file_raw=%s' % (c, raw_flag), path, '1M')
        # Map the first cluster (raw off: clusters start unmapped), at the
        # same offset in the data file, then put the host file's bytes
        # there: qemu-img copies them into its output.
        _run('qemu-io', '-f', 'qcow2', '-c', 'write 0 64k', path)
        _write(c, b'CANARY-' + os.urandom(4089))  # the host file's bytes
        add('qcow2_data_file_raw_%s' % raw_flag, path, 'qcow2', 'reject',
            DATA_FILE, c)
    # The data-file header extension without the incompatible bit: qemu
    # ignores it today, we refuse it anyway.
    c = os.path.join(d, 'canary-data-file-ext.bin')
    path = p('data-file-ext.qcow2')
    _run('qemu-img', 'create', '-q', '-f', 'qcow2', '-o',
         'data_file=%s' % c, path, '1M')
    _write(c, b'CANARY-' + os.urandom(4089))
    (features,) = struct.unpack('>Q', _read(path, 72, 8))
    _patch(path, 72, struct.pack('>Q', features & ~(1 << 2)))
    # No canary: qemu never opens the file (tests/hostile_proofs.py).
    add('qcow2_data_file_extension_only', path, 'qcow2', 'reject',
        DATA_FILE)

    # ---------------- VMDK (OSSA-2023-002) ----------------
    c = _canary(d, 'vmdk-flat-abs')
    add('vmdk_text_descriptor_absolute_extent',
        _text_vmdk(p('flat-abs.vmdk'), 'monolithicFlat',
                   ['RW 8 FLAT "%s" 0' % c]),
        'vmdk', 'reject', EXTENTS, c)
    c = _canary(d, 'vmdk-flat-rel')
    add('vmdk_text_descriptor_relative_extent',
        _text_vmdk(p('flat-rel.vmdk'), 'monolithicFlat',
                   ['RW 8 FLAT "%s" 0' % os.path.basename(c)]),
        'vmdk', 'reject', EXTENTS, c)
    c = _canary(d, 'vmdk-text-sparse')
    # A descriptor file claiming an allowed type; qemu itself refuses the
    # type, but the extent still names a host file.  No canary: qemu
    # never opens it (tests/hostile_proofs.py).
    add('vmdk_text_descriptor_claiming_monolithic_sparse',
        _text_vmdk(p('text-sparse.vmdk'), 'monolithicSparse',
                   ['RW 8 FLAT "%s" 0' % os.path.basename(c)]),
        'vmdk', 'reject', EXTENTS)
    # CVE-2022-47951: a sparse header with capacity 0 makes qemu parse the
    # embedded descriptor as a descriptor file whose extents it opens.
    for name, ctype in (('monolithic-flat', 'monolithicFlat'),
                        ('two-gb', 'twoGbMaxExtentSparse'),
                        ('vmfs', 'vmfs')):
        c = _canary(d, 'vmdk-embedded-' + name)
        path = _vmdk(p('embedded-%s.vmdk' % name), 'monolithicSparse')
        text, _s, _n = _vmdk_descriptor(path)
        text = text.replace('createType="monolithicSparse"',
                            'createType="%s"' % ctype)
        # A VMFS extent line has no offset; with one, qemu refuses the
        # line and the attack would not be real.
        extent = ('RW 8 VMFS "%s"' % c if ctype == 'vmfs'
                  else 'RW 8 FLAT "%s" 0' % c)
        text = '\n'.join(extent if line.startswith('RW ') else line
                         for line in text.split('\n'))
        _set_vmdk_descriptor(path, text)
        _patch(path, 12, struct.pack('<Q', 0))  # capacity = 0
        add('vmdk_embedded_descriptor_%s' % name.replace('-', '_'), path,
            'vmdk', 'reject', CREATE_TYPE, c)
    # Case tricks: qemu compares createType with strcmp, so these are not
    # the allowed streamOptimized even though a human reads them as such.
    for variant in ('streamoptimized', 'STREAMOPTIMIZED'):
        path = _vmdk(p('case-%s.vmdk' % variant), 'streamOptimized',
                     src=plain)
        _edit_vmdk_descriptor(path, 'createType="streamOptimized"',
                              'createType="%s"' % variant)
        add('vmdk_create_type_%s' % variant, path, 'vmdk', 'reject',
            CREATE_TYPE)
    add('vmdk_monolithic_flat_descriptor',
        _vmdk(p('monoflat.vmdk'), 'monolithicFlat'), 'vmdk', 'reject',
        EXTENTS)
    # A second extent in an otherwise valid sparse file.
    c = _canary(d, 'vmdk-second-extent')
    path = _vmdk(p('second-extent.vmdk'), 'monolithicSparse', src=plain)
    text, _s, _n = _vmdk_descriptor(path)
    lines = text.split('\n')
    i = next(n for n, line in enumerate(lines) if line.startswith('RW '))
    lines.insert(i + 1, 'RW 8 FLAT "%s" 0' % os.path.basename(c))
    _set_vmdk_descriptor(path, '\n'.join(lines))
    # No canary: qemu reads only the sparse extent of such a file.
    add('vmdk_sparse_with_second_extent', path, 'vmdk', 'reject', EXTENTS)
    # Differencing VMDK: a parent named in the descriptor.
    c = _canary(d, 'vmdk-parent')
    path = _vmdk(p('vmdk-parent.vmdk'), 'monolithicSparse', src=plain)
    _edit_vmdk_descriptor(path, 'parentCID=ffffffff',
                          'parentCID=12345678\nparentFileNameHint="%s"' % c)
    add('vmdk_differencing_parent_hint', path, 'vmdk', 'reject',
        DIFFERENCING, c)
    # The descriptor's extent is larger than the header's capacity.
    path = _vmdk(p('vmdk-size.vmdk'), 'monolithicSparse', src=plain)
    text, _s, _n = _vmdk_descriptor(path)
    sectors = struct.unpack('<Q', _read(path, 12, 8))[0]
    _set_vmdk_descriptor(path, text.replace(
        'RW %d SPARSE' % sectors, 'RW %d SPARSE' % (sectors * 64)))
    add('vmdk_extent_size_disagrees_with_header', path, 'vmdk', 'reject',
        DISAGREE)

    # ---------------- differencing VHD / VDI ----------------
    path = p('diff.vhd')
    _run('qemu-img', 'convert', '-f', 'qcow2', '-O', 'vpc', plain, path)
    for off in _vhd_footer_offsets(path):
        _patch_vhd_footer(path, off, [(60, struct.pack('>I', 4))])
    # Name a parent in the dynamic header (offset 64 of the 1024-byte
    # header at 512: parent UUID 40, parent unicode name 64).
    name = 'C:\\parent.vhd'.encode('utf-16-be')
    _patch(path, 512 + 64, name)
    add('vhd_differencing', path, 'vhd', 'reject', DIFFERENCING)
    path = _vdi(p('diff.vdi'), False, src=plain)
    _patch(path, 0x4c, struct.pack('<I', 4))
    _patch(path, 0x1b8, os.urandom(16))
    add('vdi_differencing', path, 'vdi', 'reject', DIFFERENCING)
    path = _vdi(p('undo.vdi'), False, src=plain)
    _patch(path, 0x4c, struct.pack('<I', 3))
    add('vdi_undo', path, 'vdi', 'reject', DIFFERENCING)

    # ---------------- VHDX (MS-VHDX) ----------------
    add('vhdx_dynamic', _vhdx(p('dynamic.vhdx'), plain), 'vhdx', 'accept')
    add('vhdx_fixed', _vhdx(p('fixed.vhdx'), plain, 'fixed'), 'vhdx',
        'accept')
    # A differencing disk: HasParent plus a parent locator naming a host
    # file (qemu refuses differencing VHDX today; we refuse the class).
    c = _canary(d, 'vhdx-parent')
    path = _vhdx(p('vhdx-parent.vhdx'), plain)
    (_at, _g, _o, _n, _f), where = _vhdx_item(path, VHDX_FILE_PARAMETERS)
    block_size, bits = struct.unpack('<II', _read(path, where, 8))
    _patch(path, where, struct.pack('<II', block_size, bits | 2))
    _vhdx_add_metadata(path, VHDX_PARENT_LOCATOR, 128 * 1024,
                       _vhdx_parent_locator(c), 6)
    add('vhdx_differencing_parent_locator', path, 'vhdx', 'reject',
        DIFFERENCING)
    # A parent locator without HasParent: qemu ignores it, a reader that
    # honours the locator would open the parent.
    c = _canary(d, 'vhdx-locator')
    path = _vhdx(p('vhdx-locator.vhdx'), plain)
    _vhdx_add_metadata(path, VHDX_PARENT_LOCATOR, 128 * 1024,
                       _vhdx_parent_locator(os.path.basename(c)), 6)
    add('vhdx_parent_locator_without_has_parent', path, 'vhdx', 'reject',
        DIFFERENCING)
    add('vhdx_log_needs_replay',
        vhdx_needing_log_replay(p('vhdx-log.vhdx'), plain), 'vhdx',
        'reject', VHDX_LOG)
    # The BAT region beyond the end of the file: qemu reads zeros there,
    # a disk of zeros whatever the blocks hold.
    path = _vhdx(p('vhdx-bat-beyond-eof.vhdx'), plain)
    regions = _vhdx_regions(path)
    _vhdx_set_regions(path, [
        (VHDX_BAT_REGION, 64 * MiB, regions[VHDX_BAT_REGION][1], 1),
        (VHDX_METADATA_REGION, *regions[VHDX_METADATA_REGION], 1)])
    add('vhdx_region_beyond_eof', path, 'vhdx', 'reject', CORRUPT)
    # The two region tables point at different metadata: qemu reads table
    # 1, a reader that prefers table 2 another disk.
    path = _vhdx(p('vhdx-tables-differ.vhdx'), plain)
    regions = _vhdx_regions(path)
    md_offset, md_length = regions[VHDX_METADATA_REGION]
    _patch(path, md_offset + md_length,
           _read(path, md_offset, md_length))  # a second metadata copy
    _vhdx_set_regions(path, [
        (VHDX_BAT_REGION, *regions[VHDX_BAT_REGION], 1),
        (VHDX_METADATA_REGION, md_offset + md_length, md_length, 1)],
        tables=VHDX_REGION_TABLES[1:])
    add('vhdx_region_tables_differ', path, 'vhdx', 'reject', CORRUPT)
    # The virtual-disk-size item points outside the metadata region.
    path = _vhdx(p('vhdx-item-outside.vhdx'), plain)
    (at, _g, _offset, _n, _f), _where = _vhdx_item(path,
                                                   VHDX_VIRTUAL_DISK_SIZE)
    _, md_length = _vhdx_regions(path)[VHDX_METADATA_REGION]
    _patch(path, at + 16, struct.pack('<I', md_length))
    add('vhdx_metadata_item_outside_region', path, 'vhdx', 'reject',
        CORRUPT)
    # Unknown regions and metadata items marked required.
    path = _vhdx(p('vhdx-required-region.vhdx'), plain)
    end = os.path.getsize(path)
    os.truncate(path, end + MiB)
    regions = _vhdx_regions(path)
    _vhdx_set_regions(path, [
        (VHDX_BAT_REGION, *regions[VHDX_BAT_REGION], 1),
        (VHDX_METADATA_REGION, *regions[VHDX_METADATA_REGION], 1),
        (os.urandom(16).hex(), end, MiB, 1)])
    add('vhdx_unknown_required_region', path, 'vhdx', 'reject',
        VHDX_REQUIRED)
    path = _vhdx(p('vhdx-required-item.vhdx'), plain)
    _vhdx_add_metadata(path, os.urandom(16).hex(), 128 * 1024, b'\1' * 8,
                       4)
    add('vhdx_unknown_required_metadata', path, 'vhdx', 'reject',
        VHDX_REQUIRED)
    # A virtual size beyond what the BAT can address.
    path = _vhdx(p('vhdx-size.vhdx'), plain)
    _entry, where = _vhdx_item(path, VHDX_VIRTUAL_DISK_SIZE)
    _patch(path, where, struct.pack('<Q', 2 << 40))
    add('vhdx_virtual_size_beyond_bat', path, 'vhdx', 'reject', DISAGREE)
    # Damaged checksums: region table 1, and both headers.
    path = _vhdx(p('vhdx-table-crc.vhdx'), plain)
    _patch(path, VHDX_REGION_TABLES[0] + 4, b'\xde\xad\xbe\xef')
    add('vhdx_region_table_bad_checksum', path, 'vhdx', 'reject', CORRUPT)
    path = _vhdx(p('vhdx-header-crc.vhdx'), plain)
    for header in VHDX_HEADERS:
        _patch(path, header + 4, b'\xde\xad\xbe\xef')
    add('vhdx_headers_bad_checksum', path, 'vhdx', 'reject', CORRUPT)

    # ---------------- encryption ----------------
    path = p('luks-qcow2.qcow2')
    _run('qemu-img', 'create', '-q', '-f', 'qcow2', '--object',
         'secret,id=s0,data=hunter2', '-o',
         'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=100',
         path, '1M', retry_on=PBKDF_FLAKE, attempts=PBKDF_ATTEMPTS)
    add('qcow2_luks_encrypted', path, 'qcow2', 'reject', ENCRYPTED)
    path = _qcow2(p('aes.qcow2'), data=False)
    _patch(path, 32, struct.pack('>I', 1))  # crypt_method = AES
    add('qcow2_aes_encrypted', path, 'qcow2', 'reject', ENCRYPTED)
    path = p('plain.luks')
    _run('qemu-img', 'create', '-q', '-f', 'luks', '--object',
         'secret,id=s0,data=hunter2', '-o', 'key-secret=s0,iter-time=100',
         path, '1M', retry_on=PBKDF_FLAKE, attempts=PBKDF_ATTEMPTS)
    add('luks_claimed_raw', path, 'raw', 'reject', ENCRYPTED)

    # ---------------- sizes ----------------
    add('qcow2_virtual_size_2TiB',
        _qcow2(p('huge.qcow2'), '2T', data=False), 'qcow2', 'reject', VSIZE)
    bomb = p('bomb.qcow2')
    _run('qemu-img', 'create', '-q', '-f', 'qcow2', bomb, '48M')
    _qemu_io(bomb, 'qcow2', 'write -c -P 0x42 0 48M')
    add('qcow2_compressed_expansion_bomb', bomb, 'qcow2', 'reject', VSIZE,
        max_virtual_size=32 * MiB)
    path = _qcow2(p('l1-small.qcow2'))
    h = _qcow2_header(path)
    _patch(path, 24, struct.pack('>Q', h['size'] * 4096 * 4))
    add('qcow2_size_beyond_l1_table', path, 'qcow2', 'reject', DISAGREE)
    path = p('footer-mismatch.vhd')
    _run('qemu-img', 'convert', '-f', 'qcow2', '-O', 'vpc', plain, path)
    # The copy at offset 0 (which qemu reads) claims 64 times the size the
    # footer at the end claims.
    (cur,) = struct.unpack('>Q', _read(path, 40, 8))
    _patch_vhd_footer(path, 0, [(40, struct.pack('>Q', cur * 64)),
                                (48, struct.pack('>Q', cur * 64))])
    add('vhd_footer_copies_disagree', path, 'vhd', 'reject', DISAGREE)
    path = _vdi(p('vdi-size.vdi'), False, src=plain)
    (disk,) = struct.unpack('<Q', _read(path, 0x170, 8))
    _patch(path, 0x170, struct.pack('<Q', disk * 4))
    add('vdi_size_disagrees_with_blocks', path, 'vdi', 'reject', DISAGREE)

    # ---------------- corruption (qemu-img check and header sanity) ------
    path = _qcow2(p('truncated.qcow2'))
    size = os.path.getsize(path)
    os.truncate(path, size - 64 * 1024 - 512)
    add('qcow2_truncated', path, 'qcow2', 'reject', CORRUPT)
    path = _qcow2(p('l1-beyond-eof.qcow2'))
    _patch(path, 40, struct.pack('>Q', 64 * MiB))
    add('qcow2_l1_table_beyond_eof', path, 'qcow2', 'reject', CORRUPT)
    path = _qcow2(p('refcount-beyond-eof.qcow2'))
    _patch(path, 48, struct.pack('>Q', 64 * MiB))
    add('qcow2_refcount_table_beyond_eof', path, 'qcow2', 'reject', CORRUPT)
    path = _qcow2(p('shared.qcow2'))
    l2, cluster = _first_l2_offset(path)
    (first,) = struct.unpack('>Q', _read(path, l2, 8))
    # Point guest clusters 2..15 at guest cluster 0's host cluster.
    _patch(path, l2 + 16, struct.pack('>Q', first) * 14)
    add('qcow2_clusters_shared', path, 'qcow2', 'reject', CORRUPT)
    path = _qcow2(p('corrupt-bit.qcow2'))
    _set_incompat_bit(path, 1)
    add('qcow2_corrupt_bit', path, 'qcow2', 'reject', CORRUPT)
    path = _qcow2(p('unknown-feature.qcow2'))
    _set_incompat_bit(path, 9)
    add('qcow2_unknown_incompatible_feature', path, 'qcow2', 'reject',
        FEATURES)
    path = p('header-only.qcow2')
    _write(path, _read(plain, 0, 512))
    add('qcow2_one_sector_header', path, 'qcow2', 'reject', CORRUPT)
    path = p('short.qcow2')
    _write(path, _read(plain, 0, 40))
    add('qcow2_header_cut_short', path, 'qcow2', 'reject', UNREADABLE)

    # ---------------- mismatches and hidden formats ----------------
    add('qcow2_claimed_raw', plain, 'raw', 'reject', MISMATCH)
    add('vmdk_claimed_qcow2', p('stream.vmdk'), 'qcow2', 'reject', MISMATCH)
    add('vhd_dynamic_claimed_raw', dyn, 'raw', 'reject', MISMATCH)
    add('iso_claimed_raw', p('disc.iso'), 'raw', 'reject', MISMATCH)
    path = p('random.bin')
    _write(path, os.urandom(256 * 1024))
    add('random_bytes_claimed_qcow2', path, 'qcow2', 'reject', MISMATCH)
    empty = p('empty.raw')
    _write(empty, b'')
    add('zero_length_raw', empty, 'raw', 'reject', EMPTY)
    add('zero_length_qcow2', empty, 'qcow2', 'reject', EMPTY)
    path = p('qcow2-plus-gpt.qcow2')
    _run('qemu-img', 'convert', '-f', 'qcow2', '-O', 'qcow2', plain, path)
    # A boot signature and a protective-MBR entry in the qcow2 header's
    # padding: both a qcow2 and a GPT disk.
    _patch(path, 446, struct.pack('<B3BB3BII', 0, 0, 2, 0, 0xee, 0xfe,
                                  0xff, 0xff, 1, 2047))
    _patch(path, 510, b'\x55\xaa')
    add('qcow2_that_is_also_gpt', path, 'qcow2', 'reject', MULTIPLE)
    path = p('qcow2-plus-iso.qcow2')
    _run('qemu-img', 'convert', '-f', 'qcow2', '-O', 'qcow2', plain, path)
    data = bytearray(_read(path))
    iso = _read(_iso(p('tmp.iso')), 0)
    os.unlink(p('tmp.iso'))
    # qcow2 clusters are 64 KiB; the PVD at 32 KiB sits in the unused
    # remainder of the header cluster.
    data[16 * 2048:17 * 2048] = iso[16 * 2048:17 * 2048]
    _write(path, data)
    add('qcow2_that_is_also_iso', path, 'qcow2', 'reject', MULTIPLE)
    path = p('mbr-bad-boot.raw')
    _mbr_disk(path, boot=0x42)
    add('raw_mbr_invalid_boot_flag', path, 'raw', 'reject', PARTITIONS)
    # Guest data that is itself a disk image with a backing file: fine for
    # qemu-img, but the raw output would be a qcow2 to the next reader.
    c = _canary(d, 'nested')
    inner = _backing(d, 'nested-inner', c)
    path = p('nested.qcow2')
    _write(p('nested-guest.raw'), _read(inner).ljust(MiB, b'\0'))
    _run('qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2',
         p('nested-guest.raw'), path)
    os.unlink(p('nested-guest.raw'))
    os.unlink(inner)
    add('qcow2_hiding_qcow2_with_backing_file', path, 'qcow2', 'reject',
        HIDDEN)

    # ---------------- ploop (qemu: parallels) ----------------
    # qemu opens most of these without complaint: it reads zeros past the
    # end of the file or the BAT, and qemu-img check misses a size that
    # lies and clusters used twice.
    ploop = _ploop(p('plain.ploop'), plain)
    add('ploop_64k_clusters', ploop, 'ploop', 'accept')
    add('ploop_1MiB_clusters', _ploop(p('big-cluster.ploop'), plain, '1M'),
        'ploop', 'accept')
    add('ploop_old_header', _ploop_with_old_magic(p('old.ploop'), plain),
        'ploop', 'accept')
    tracks, entries, sectors, bat = _ploop_header(ploop)
    used = [i for i, e in enumerate(bat) if e]
    path = _ploop(p('ploop-beyond-eof.ploop'), plain)
    _patch(path, 64 + 4 * used[-1], struct.pack('<I', 4096))
    add('ploop_cluster_beyond_eof', path, 'ploop', 'reject', CORRUPT)
    path = _ploop(p('ploop-shared.ploop'), plain)
    _patch(path, 64 + 4 * used[-1], struct.pack('<I', bat[used[0]]))
    add('ploop_clusters_shared', path, 'ploop', 'reject', CORRUPT)
    path = _ploop_with_old_magic(p('ploop-in-header.ploop'), plain)
    _patch(path, 64 + 4 * used[0], struct.pack('<I', 1))
    add('ploop_cluster_in_header', path, 'ploop', 'reject', CORRUPT)
    path = _ploop(p('ploop-size.ploop'), plain)
    _patch(path, 36, struct.pack('<Q', sectors * 64))
    add('ploop_size_beyond_bat', path, 'ploop', 'reject', DISAGREE)
    path = _ploop(p('ploop-small-bat.ploop'), plain)
    _patch(path, 32, struct.pack('<I', entries // 2))
    add('ploop_bat_smaller_than_size', path, 'ploop', 'reject', DISAGREE)
    path = _ploop_with_old_magic(p('ploop-size-high.ploop'), plain)
    _patch(path, 36, struct.pack('<Q', sectors | 1 << 32))
    add('ploop_old_header_size_high_bits', path, 'ploop', 'reject', DISAGREE)
    path = _ploop(p('ploop-bat-beyond-eof.ploop'), plain)
    _patch(path, 32, struct.pack('<I', 1 << 24))
    add('ploop_bat_beyond_eof', path, 'ploop', 'reject', CORRUPT)
    path = _ploop(p('ploop-data-off.ploop'), plain)
    _patch(path, 48, struct.pack('<I', 1 << 30))
    add('ploop_data_area_beyond_eof', path, 'ploop', 'reject', CORRUPT)
    path = _ploop(p('ploop-ext.ploop'), plain)
    _patch(path, 56, struct.pack('<Q', 1 << 30))
    add('ploop_extension_beyond_eof', path, 'ploop', 'reject', CORRUPT)
    path = _ploop(p('ploop-in-use.ploop'), plain)
    _patch(path, 44, struct.pack('<I', PLOOP_IN_USE_MAGIC))
    add('ploop_in_use', path, 'ploop', 'reject', PLOOP_IN_USE)
    path = _ploop(p('ploop-no-cluster.ploop'), plain)
    _patch(path, 28, struct.pack('<I', 0))
    add('ploop_zero_cluster_size', path, 'ploop', 'reject', UNREADABLE)
    add('ploop_claimed_raw', ploop, 'raw', 'reject', MISMATCH)
    add('ploop_claimed_qcow2', ploop, 'qcow2', 'reject', MISMATCH)
    add('qcow2_claimed_ploop', plain, 'ploop', 'reject', MISMATCH)
    add('random_bytes_claimed_ploop', p('random.bin'), 'ploop', 'reject',
        MISMATCH)
    # Guest data that is a ploop: the raw output would be one.
    path = p('hiding-ploop.qcow2')
    _write(p('hiding-ploop.raw'), _read(ploop))
    _run('qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2',
         p('hiding-ploop.raw'), path)
    os.unlink(p('hiding-ploop.raw'))
    add('qcow2_hiding_ploop', path, 'qcow2', 'reject', HIDDEN)
    return cases


def main(argv):
    directory = argv[1] if len(argv) > 1 else 'hostile-corpus'
    cases = build_corpus(directory)
    for case in cases:
        print('%-45s %-6s %-7s %s' % (case.name, case.claimed_format,
                                      case.expected,
                                      case.reason_substring or ''))
    print('%d hostile, %d benign' % (
        sum(c.hostile for c in cases), sum(not c.hostile for c in cases)))


if __name__ == '__main__':
    main(sys.argv)
