"""Work files written sparsely: blocks of zeros stay holes.

A decompressed upload and a disk copied out of an OVA are often mostly
zeros; writing them as holes saves the host's space and the time to
write them, and qemu-img reads holes as zeros.
"""

from __future__ import annotations

import contextlib
import os

from glance_convert import units
from glance_convert.host import layout

#: Bytes read and written at a time: bounds memory.
CHUNK = units.MiB
#: Runs of zeros this long (and aligned) become holes in the work file.
HOLE_BLOCK = 64 * units.KiB
_ZERO_BLOCK = bytes(HOLE_BLOCK)


class Writer:
    """Writes a stream to a file, leaving aligned blocks of zeros as holes."""

    def __init__(self, fd: int):
        self._fd = fd
        self.size = 0

    def write(self, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray)):
            data = bytes(data)
        view = memoryview(data)
        pos = run = 0  # run: start of the data not yet written
        while pos < len(view):
            # Up to the next block boundary, so holes stay block-aligned.
            n = min(len(view) - pos,
                    HOLE_BLOCK - (self.size + pos) % HOLE_BLOCK)
            # startswith compares in place: slicing would copy every byte.
            if n == HOLE_BLOCK and data.startswith(_ZERO_BLOCK, pos):
                self._pwrite(view[run:pos], self.size + run)
                run = pos + n
            pos += n
        self._pwrite(view[run:], self.size + run)
        self.size += len(view)

    def _pwrite(self, view, offset: int) -> None:
        while len(view):
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written

    def finish(self) -> None:
        os.ftruncate(self._fd, self.size)


@contextlib.contextmanager
def written(path: str):
    """A :class:`Writer` onto the new work file ``path``, finished when the
    block ends; ``path`` is removed if the block fails."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                 0o600)
    try:
        writer = Writer(fd)
        yield writer
        writer.finish()
    except BaseException:
        os.close(fd)
        fd = None
        layout.remove(path)
        raise
    finally:
        if fd is not None:
            os.close(fd)
