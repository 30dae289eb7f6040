"""compressed: gzip, bzip2, xz, zstd or a one-file zip, decompressed.

Distributions publish images as ``.qcow2.xz``,
``.img.bz2``, ``.raw.zst`` or zip files, and Glance's own
``image_decompression`` plugin reads only zip, gzip and lha (and skips
images whose container format is ``compressed``).  Here:

* the compression is recognised from the first bytes, never from a name:
  gzip, bzip2, xz, zstd, or zip with exactly one member;
* the data is decompressed as a stream into a sparse work file (blocks of
  zeros are skipped, so they stay holes) and stops as soon as it crosses
  the size limit, so a decompression bomb writes at most the limit;
* the SHA-256 of the upload *as uploaded* is computed from the very bytes
  the decompressor reads, so it costs no extra read
  (:class:`~glance_convert.pipeline.upload_hash.HashingReader`).

Every refusal is one of this container's named checks (stage
``container``), so the CLI and the documentation list it.
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import lzma
import os
import struct
import time
import zipfile
import zlib
from typing import Callable

from glance_convert import errors
from glance_convert import safety
from glance_convert import units
from glance_convert.pipeline import hold
from glance_convert.pipeline import stream_headers
from glance_convert.pipeline import sparse
from glance_convert.pipeline import upload_hash
from glance_convert.pipeline.containers import base

# -- the checks of this container ----------------------------------------

_COMPRESSED = ('compressed',)
_STAGE = (safety.CONTAINER,)
NOT_COMPRESSED = safety.Check(
    'not_compressed', 'the upload is not compressed with gzip, bzip2, xz, '
    'zstd or zip, as container format "compressed" says',
    'the compression is recognised from the first bytes, never from a '
    'name',
    _STAGE, 'the upload is compressed with a known compression',
    containers=_COMPRESSED)
STREAM_TRUNCATED = safety.Check(
    'truncated_stream', 'the {compression} data is truncated',
    'the compressed stream ends where its format says; zstd frames are '
    'walked first, as python-zstandard ends quietly mid-frame',
    _STAGE, 'the compressed data is complete',
    containers=_COMPRESSED)
STREAM_CORRUPT = safety.Check(
    'corrupt_stream', 'the {compression} data is corrupt',
    'the compressed stream decodes, its checksums included',
    _STAGE, 'the compressed data decodes', containers=_COMPRESSED)
BOMB = safety.Check(
    'decompressed_size', 'its decompressed data is larger than the limit of '
    '{limit}',
    'decompression stops as soon as the data crosses [glance_convert] '
    'max_virtual_size, under the conversion\'s slot, time limit and space '
    'reservation: a decompression bomb writes at most the limit',
    _STAGE, 'the decompressed data is within the limit of {limit}',
    advisory='decompression bomb (CWE-409)', containers=_COMPRESSED)
COMPRESSED_EMPTY = safety.Check(
    'compressed_empty', 'the compressed upload holds no data',
    'the decompressed data is not empty',
    _STAGE, 'the compressed upload holds data',
    containers=_COMPRESSED)
ZIP_MEMBERS = safety.Check(
    'zip_members', 'a zip upload must hold exactly one file, not {count}',
    'a zip holds one member, a plain unencrypted file: which of several '
    'files is the image would be a guess',
    _STAGE, 'the zip holds one file', containers=_COMPRESSED)
ZIP_MEMBER = safety.Check(
    'zip_member', 'the file in the zip upload is {what}',
    'the one zip member is neither a directory nor encrypted',
    _STAGE, 'the zip member is a plain file', containers=_COMPRESSED)


#: This container's checks, in the order they run.
CHECKS = (NOT_COMPRESSED, STREAM_TRUNCATED, STREAM_CORRUPT, BOMB,
          COMPRESSED_EMPTY, ZIP_MEMBERS, ZIP_MEMBER)

#: Compressions recognised from their first bytes, with their magic.
MAGIC = (
    ('gzip', b'\x1f\x8b'),
    ('bzip2', b'BZh'),
    ('xz', b'\xfd7zXZ\x00'),
    ('zstd', b'\x28\xb5\x2f\xfd'),
    ('zip', b'PK\x03\x04'),
)
KINDS = tuple(kind for kind, _ in MAGIC)

#: Bytes asked of the decompressor at a time: bounds its output and memory.
CHUNK = sparse.CHUNK
_ZSTD_SKIPPABLE = range(0x184D2A50, 0x184D2A60)


def detect(path: str) -> str | None:
    """The compression of ``path`` from its first bytes, or None."""
    with open(path, 'rb') as f:
        head = f.read(8)
    for kind, magic in MAGIC:
        if head.startswith(magic):
            return kind
    return None


@dataclasses.dataclass(frozen=True)
class Unpacked:
    """What :func:`decompress` did."""

    compression: str
    size: int              # decompressed bytes (the work file's length)
    source_size: int       # bytes of the upload
    #: SHA-256 of the upload as uploaded, finishing.
    sha256: upload_hash.Hasher

    @property
    def source_sha256(self) -> str:
        """The hex SHA-256 of the upload (waits for the hash to end)."""
        return self.sha256.result()


def _zstd_check_frames(f, kind: str) -> None:
    """Walk the zstd frames and blocks of ``f`` without decompressing.

    python-zstandard's stream reader ends quietly when the input ends in
    the middle of a frame; walking the block headers (a few small reads)
    proves the stream is complete before it is decompressed.
    """
    size = os.fstat(f.fileno()).st_size
    pos = 0

    def read(offset: int, n: int) -> bytes:
        data = os.pread(f.fileno(), n, offset)
        if len(data) != n:
            STREAM_TRUNCATED.reject(
                'zstd stream ends at %d' % offset, compression=kind)
        return data

    while pos < size:
        magic, = struct.unpack('<I', read(pos, 4))
        if magic in _ZSTD_SKIPPABLE:
            length, = struct.unpack('<I', read(pos + 4, 4))
            pos += 8 + length
            if pos > size:
                STREAM_TRUNCATED.reject(
                    'skippable frame past the end', compression=kind)
            continue
        if magic != 0xFD2FB528:
            STREAM_CORRUPT.reject(
                'no zstd frame at offset %d' % pos, compression=kind)
        fhd = read(pos + 4, 1)[0]
        fcs_flag, single, checksum, dict_flag = (
            fhd >> 6, fhd >> 5 & 1, fhd >> 2 & 1, fhd & 3)
        header = (5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
                  + (1 if single else 0, 2, 4, 8)[fcs_flag])
        pos += header
        while True:
            raw = read(pos, 3)
            block = raw[0] | raw[1] << 8 | raw[2] << 16
            last, btype, bsize = block & 1, block >> 1 & 3, block >> 3
            if btype == 3:
                STREAM_CORRUPT.reject(
                    'reserved block type at %d' % pos, compression=kind)
            pos += 3 + (1 if btype == 1 else bsize)
            if last:
                break
        pos += 4 if checksum else 0
        if pos > size:
            STREAM_TRUNCATED.reject('zstd frame ends past the end',
                                    compression=kind)


def _zstd_stream(reader: upload_hash.HashingReader, f, kind: str):
    try:
        import zstandard
    except ImportError:  # pragma: no cover - it is in requirements.txt
        raise errors.ConversionError(
            'zstd compression is not supported on this cloud.',
            'the zstandard package is not installed')
    _zstd_check_frames(f, kind)
    return zstandard.ZstdDecompressor().stream_reader(
        reader, read_size=CHUNK, read_across_frames=True, closefd=False)


def _zip_stream(reader: upload_hash.HashingReader):
    archive = zipfile.ZipFile(reader)
    members = archive.infolist()
    if len(members) != 1:
        ZIP_MEMBERS.reject(count=len(members))
    member = members[0]
    if member.is_dir():
        ZIP_MEMBER.reject(what='a directory')
    if member.flag_bits & 0x1:
        ZIP_MEMBER.reject(what='encrypted')
    return archive.open(member)


def _open_stream(kind: str, reader: upload_hash.HashingReader, f):
    if kind == 'gzip':
        return gzip.GzipFile(fileobj=reader, mode='rb')
    if kind == 'bzip2':
        return bz2.BZ2File(reader)
    if kind == 'xz':
        return lzma.LZMAFile(reader, format=lzma.FORMAT_XZ)
    if kind == 'zstd':
        return _zstd_stream(reader, f, kind)
    return _zip_stream(reader)


def _stream_errors() -> tuple:
    found = [zlib.error, lzma.LZMAError, zipfile.BadZipFile, OSError,
             ValueError, NotImplementedError]
    try:
        import zstandard
        found.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(found)


def decompress(src: str, dst: str, *, limit: int,
               should_cancel: Callable[[], bool] | None = None,
               deadline: float | None = None,
               on_progress: Callable[[int, int], None] | None = None
               ) -> Unpacked:
    """Decompress ``src`` into the new sparse file ``dst``; hash ``src``.

    :param limit: most bytes the decompressed data may have; the stream is
        stopped as soon as it crosses it.
    :param deadline: ``time.monotonic()`` value after which it gives up.
    :param on_progress: ``f(compressed bytes read, bytes written)``, called
        once per chunk; it may raise (e.g. when no more space can be
        reserved) to stop.
    ``dst`` is removed on failure.
    """
    with open(src, 'rb') as f:
        kind = detect(src)
        if kind is None:
            NOT_COMPRESSED.reject('no known magic in %s' % src)
        reader = upload_hash.HashingReader(f)
        try:
            with sparse.written(dst) as writer:
                _copy(kind, reader, f, writer, limit, should_cancel,
                      deadline, on_progress)
        except BaseException:
            reader.abandon()
            raise
        sha256 = reader.finish()
        source_size = reader.hashed
    return Unpacked(kind, writer.size, source_size, sha256)


def _copy(kind, reader, f, writer, limit, should_cancel, deadline,
          on_progress) -> None:
    bad = _stream_errors()
    try:
        stream = _open_stream(kind, reader, f)
    except errors.ConversionError:
        raise
    except bad as exc:
        STREAM_CORRUPT.reject(str(exc), compression=kind)
    with stream:
        while True:
            try:
                chunk = stream.read(CHUNK)
            except EOFError as exc:
                STREAM_TRUNCATED.reject(str(exc), compression=kind)
            except bad as exc:
                STREAM_CORRUPT.reject(str(exc), compression=kind)
            if not chunk:
                break
            if writer.size + len(chunk) > limit:
                BOMB.reject(
                    'decompressed data passed %d bytes' % limit,
                    limit=units.human_size(limit))
            try:
                writer.write(chunk)
            except OSError as exc:
                raise errors.ConversionFailed(
                    'The decompressed image could not be written.', str(exc))
            if should_cancel is not None and should_cancel():
                raise errors.ConversionCancelled(
                    'The import was cancelled during decompression.')
            if deadline is not None and time.monotonic() > deadline:
                raise errors.ConversionFailed(
                    'Decompressing the image took longer than the time '
                    'allowed.', 'decompression deadline passed after %d '
                    'bytes' % writer.size)
            if on_progress is not None:
                on_progress(reader.hashed, writer.size)
    if writer.size == 0:
        COMPRESSED_EMPTY.reject()


#: Suffix of the decompressed work file: ``<image-id>.glance-convert.<it>``.
WORK_SUFFIX = 'unpacked'
#: The first space reservation for decompression, at least.
FIRST_RESERVATION = units.GiB


@dataclasses.dataclass
class Prepared:
    """The decompressed upload, for the conversion that follows."""

    path: str              # the decompressed work file
    unpacked: Unpacked
    workspace: hold.Hold   # hand this to the conversion: it joins the hold

    def keep(self) -> None:
        """Hand the work file on (pass-through): do not remove it."""
        self.workspace.keep(self.path)


@contextlib.contextmanager
def decompressed(src: str, *, image_id: str, work_dir: str, limit: int,
                 timeout: float | None = None, workspace=None,
                 slot_timeout: float = 600, status=None,
                 on_progress: Callable[[int, int], None] | None = None,
                 info_for_ledger: dict | None = None):
    """Hold a conversion slot, decompress ``src``; yield :class:`Prepared`.

    Decompression runs like a conversion, in a :mod:`~.hold` (the
    conversion inside it joins it) and within ``timeout`` seconds.  Space
    is reserved as the data grows: first ``max(FIRST_RESERVATION, 4 x
    upload)``, then as much again each time the written data reaches what
    is reserved; when the host has no more room, the import is refused.
    ``on_progress`` is as for :func:`decompress`.  The work file is
    removed when the block ends, unless :meth:`Prepared.keep` was called.
    """
    deadline = time.monotonic() + timeout if timeout else None
    with hold.held(workspace, image_id=image_id, work_dir=work_dir,
                   slot_timeout=slot_timeout, status=status,
                   info=info_for_ledger) as work:
        path = work.work_file(WORK_SUFFIX)
        first = min(limit, max(FIRST_RESERVATION, 4 * os.path.getsize(src)))
        work.reserve(first, step='decompress', paths=(path,))
        reserved = [first]

        def grow(read: int, written: int) -> None:
            if units.allocated_bytes(path) >= reserved[0]:
                more = min(reserved[0], max(limit - reserved[0], 0))
                work.reserve(more, step='decompress', wait=False)
                reserved[0] += more
            if on_progress is not None:
                on_progress(read, written)

        unpacked = decompress(src, path, limit=limit,
                              should_cancel=work.status.is_aborted,
                              deadline=deadline, on_progress=grow)
        yield Prepared(path, unpacked, work)


@contextlib.contextmanager
def open_upload(request: base.Request):
    with decompressed(
            request.src, limit=request.policy.max_virtual_size,
            timeout=request.timeout, image_id=request.image_id,
            work_dir=request.work_dir, workspace=request.workspace,
            slot_timeout=request.slot_timeout, status=request.status,
            info_for_ledger=request.info_for_ledger) as prepared:
        sha256 = prepared.unpacked.sha256
        try:
            yield base.checked_first(base.Opened(
                prepared.path, request.disk_format, request.container_format,
                prepared.workspace, {}, _hash=sha256,
                _expected=request.expected_sha256, _keep=prepared.keep))
        finally:
            sha256.cancel()   # no-op once taken


CONTAINER = base.Container(
    'compressed', 'gzip, bzip2, xz, zstd or a one-file zip', unpacks=True,
    states_disk_format=False, open=open_upload, checks=CHECKS,
    # Only from whole stream headers: a raw disk may start with a magic.
    recognise=stream_headers.compression_of)
