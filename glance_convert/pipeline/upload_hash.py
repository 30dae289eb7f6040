"""The SHA-256 of the upload as uploaded, and the user's checksum of it.

The hash runs in a second thread, so that it costs no time on the way to
the conversion: a compressed upload is hashed from the very bytes the
decompressor reads (:class:`HashingReader` feeding a :class:`Hasher`); an
upload that is not decompressed is read once more by
:class:`BackgroundHash` while qemu-img works.  Both answer ``result`` and
``cancel``; the digest is waited for only when it is needed (to check the
user's checksum before converting, or to record it at the end).
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading

from glance_convert import errors
from glance_convert import units
from glance_convert.pipeline import checks

#: The image property that holds the SHA-256 of the upload as uploaded.
SOURCE_SHA256 = 'glance_convert_source_sha256'

#: Bytes read at a time.
CHUNK = units.MiB


class Hasher:
    """SHA-256 in a worker thread, fed blocks in order.

    hashlib releases the GIL while it hashes a large buffer, so the hash
    runs on the second core while the reader's thread decompresses (zlib,
    bz2, lzma and zstandard release it too) and writes.  The queue is
    bounded: at most ``DEPTH`` blocks wait, so memory stays bounded and a
    slow hash slows the reader instead of piling up data.  Where the hash
    is slower than the reading (zstd decompresses faster than SHA-256
    hashes without SHA instructions; an OVA is only copied), the last
    blocks are hashed after :meth:`close`, while the conversion runs.
    """

    DEPTH = 8

    def __init__(self):
        self._sha = hashlib.sha256()
        self._queue: queue.Queue = queue.Queue(self.DEPTH)
        self._error: BaseException | None = None
        self._closed = False
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='glance-convert-sha256')
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                block = self._queue.get()
                if block is None:
                    return
                if not self._cancelled:
                    self._sha.update(block)
        except BaseException as exc:  # noqa: BLE001 - raised by result()
            self._error = exc
            while self._queue.get() is not None:
                pass  # drain, so the feeder never blocks

    def update(self, block) -> None:
        """Hash ``block`` next; it must not change afterwards (bytes)."""
        self._queue.put(block)

    def close(self) -> None:
        """No more blocks: the hash finishes in its thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)

    def result(self) -> str:
        """The hex digest, once every block is hashed."""
        self.close()
        self._thread.join()
        if self._error is not None:
            raise errors.ConversionError(
                'The uploaded data could not be read.', str(self._error))
        if self._cancelled:
            raise errors.ConversionCancelled('The upload hash was stopped.')
        return self._sha.hexdigest()

    def cancel(self) -> None:
        """End the thread without a result (the caller failed or is done)."""
        self._cancelled = True
        self.close()
        self._thread.join()


class HashingReader:
    """A file that hashes every byte of itself, in order, as it is read.

    The file is read in blocks of :data:`CHUNK` bytes whatever the
    decompressor asks for (the stdlib decompressors ask 8 KiB at a time),
    each block read once and served from memory; blocks that continue
    from the hashed position go to a :class:`Hasher` thread.  Reads
    elsewhere (zip reads its directory at the end first) are served
    unhashed; :meth:`finish` hashes whatever was not read in order.
    """

    def __init__(self, f):
        self._f = f
        self._pos = 0
        self._block = b''
        self._block_at = 0
        self.hashed = 0
        self._hasher = Hasher()

    def _fill(self) -> None:
        """Read the block that starts at ``self._pos``."""
        self._f.seek(self._pos)
        block = self._f.read(CHUNK)
        start, end = self._pos, self._pos + len(block)
        if start <= self.hashed < end:
            self._hasher.update(block if self.hashed == start
                                else block[self.hashed - start:])
            self.hashed = end
        self._block, self._block_at = block, start

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = max(os.fstat(self._f.fileno()).st_size - self._pos, 0)
        pieces = []
        while n > 0:
            offset = self._pos - self._block_at
            if not 0 <= offset < len(self._block):
                # Sequential reads continue where the last block ended,
                # so blocks stay whole and no byte is read twice.
                self._fill()
                offset = 0
                if not self._block:
                    break
            piece = self._block[offset:offset + n]
            pieces.append(piece)
            self._pos += len(piece)
            n -= len(piece)
        return pieces[0] if len(pieces) == 1 else b''.join(pieces)

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            self._pos = offset
        elif whence == os.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = self._f.seek(offset, whence)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass  # the caller owns the file

    @property
    def closed(self) -> bool:
        return False

    def finish(self) -> Hasher:
        """Hash the rest of the file; return the hash, still finishing."""
        self._f.seek(self.hashed)
        while True:
            data = self._f.read(CHUNK)
            if not data:
                break
            self._hasher.update(data)
            self.hashed += len(data)
        self._hasher.close()
        return self._hasher

    def abandon(self) -> None:
        """Stop the hash thread after a failure."""
        self._hasher.cancel()


def expected_sha256(properties: dict) -> str | None:
    """The publisher's SHA-256 the user set on the image, normalised.

    Raises ImageRejected when it is set but is not a SHA-256, so a typo is
    not mistaken for a mismatch.
    """
    value = properties.get(SOURCE_SHA256)
    if value is None or value == '':
        return None
    value = str(value).strip().lower()
    if len(value) != 64 or any(c not in '0123456789abcdef' for c in value):
        checks.SHA256_FORMAT.reject(repr(value))
    return value


def verify_sha256(actual: str, expected: str | None) -> None:
    """Refuse the upload when the user's checksum does not match."""
    if expected is not None and actual != expected:
        checks.SHA256.reject(actual=actual, expected=expected)


class BackgroundHash:
    """The SHA-256 of a file, read in a second thread.

    For uploads that are not decompressed: the hash runs on the second
    core while qemu-img works on the first (hashlib releases the GIL on
    large buffers).  :meth:`result` waits for it; :meth:`cancel` stops it.
    """

    def __init__(self, path: str):
        self._path = path
        self._stop = threading.Event()
        self._digest: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='glance-convert-sha256')
        self._thread.start()

    def _run(self) -> None:
        try:
            sha = hashlib.sha256()
            with open(self._path, 'rb') as f:
                while not self._stop.is_set():
                    data = f.read(CHUNK)
                    if not data:
                        self._digest = sha.hexdigest()
                        return
                    sha.update(data)
        except BaseException as exc:  # noqa: BLE001 - handed to result()
            self._error = exc

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise errors.ConversionError(
                'The uploaded data could not be read.', str(self._error))
        if self._digest is None:
            raise errors.ConversionCancelled('The upload hash was stopped.')
        return self._digest

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join()
