"""Compression recognised in an upload declared ``bare``, from whole headers.

Users upload ``disk.img.gz`` or ``disk.qcow2.xz`` without setting
``container_format=compressed``.  Stored as they are, such images are
garbage to Nova.  A raw disk, though, may begin with bytes that look like a
magic number, so a magic number alone decides nothing here: each kind is
recognised only when its whole stream header holds together, checksums
included where the format has them, and, for the formats without a header
checksum, when the first block decompresses.

* gzip: magic, method 8 (deflate), no reserved flag bits, the header CRC16
  when FHCRC is set, and the start inflates;
* xz: magic, stream flags with a known check type, and their CRC32;
* bzip2: ``BZh``, a block size digit and a block (or end-of-stream) magic;
* zstd: magic, a frame header without its reserved bit, and the start
  decompresses;
* zip: a local file header and an end-of-central-directory record that
  agree (Python's ``zipfile`` opens it and it names one file).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import zstandard

#: Bytes read from the upload, and at most decompressed from them, to
#: confirm a header that carries no checksum (a zstd block is up to 128 KiB).
PROBE = 256 * 1024

_XZ_CHECKS = (0x00, 0x01, 0x04, 0x0A)    # none, CRC32, CRC64, SHA-256
_BZ_BLOCK = bytes.fromhex('314159265359')
_BZ_END = bytes.fromhex('177245385090')


def _gzip(head: bytes, f) -> bool:
    if len(head) < 10 or head[:3] != b'\x1f\x8b\x08' or head[3] & 0xE0:
        return False
    flags = head[3]
    if flags & 0x02:   # FHCRC: a CRC16 of the header, checked below
        pos = 10
        if flags & 0x04:
            (xlen,) = struct.unpack_from('<H', head, pos)
            pos += 2 + xlen
        for bit in (0x08, 0x10):   # FNAME, FCOMMENT: zero-terminated
            if flags & bit:
                end = head.find(b'\0', pos)
                if end < 0:
                    return False
                pos = end + 1
        if len(head) < pos + 2:
            return False
        (crc16,) = struct.unpack_from('<H', head, pos)
        if zlib.crc32(head[:pos]) & 0xFFFF != crc16:
            return False
    try:
        out = zlib.decompressobj(wbits=31).decompress(head, PROBE)
    except zlib.error:
        return False
    return bool(out)


def _xz(head: bytes, f) -> bool:
    if len(head) < 12 or head[:6] != b'\xfd7zXZ\x00':
        return False
    flags = head[6:8]
    if flags[0] != 0 or flags[1] not in _XZ_CHECKS:
        return False
    (crc,) = struct.unpack_from('<I', head, 8)
    return zlib.crc32(flags) == crc


def _bzip2(head: bytes, f) -> bool:
    return (len(head) >= 10 and head[:3] == b'BZh'
            and head[3:4] in b'123456789'
            and head[4:10] in (_BZ_BLOCK, _BZ_END))


def _zstd(head: bytes, f) -> bool:
    if len(head) < 6 or head[:4] != b'\x28\xb5\x2f\xfd' or head[4] & 0x08:
        return False
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(head))
        out = reader.read(PROBE)   # bounded: a zstd block can expand a lot
    except zstandard.ZstdError:
        return False
    return bool(out)


def _zip(head: bytes, f) -> bool:
    if head[:4] != b'PK\x03\x04':
        return False
    try:
        f.seek(0)
        with zipfile.ZipFile(f) as archive:
            return len(archive.infolist()) == 1
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


#: Each compression with its test of the whole header, in the order tried.
KINDS = (('gzip', _gzip), ('xz', _xz), ('bzip2', _bzip2), ('zstd', _zstd),
         ('zip', _zip))


def compression_of(path: str) -> str | None:
    """The compression ``path`` is in, judged from its whole stream
    header; None for anything else, a raw disk that merely begins with a
    magic number included, and a file that cannot be read (the pipeline
    reports that in its own words)."""
    try:
        with open(path, 'rb') as f:
            head = f.read(PROBE)
            for kind, holds in KINDS:
                if holds(head, f):
                    return kind
    except OSError:
        return None
    return None
