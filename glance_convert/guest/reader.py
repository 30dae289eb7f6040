"""Reading a guest's bytes, at a bounded cost.

A guest disk is untrusted: its partition table and filesystems can point
anywhere, loop, or claim millions of entries.  Every parser of this
package reads through a :class:`Budgeted` reader, which stops after a
fixed number of bytes and of reads, so a hostile disk costs at most that
much.  :class:`BudgetSpent` and :class:`ReadFailed` are internal: the
caller turns them into "facts incomplete", never into a failed import.
"""

import os
import typing

#: Defaults of one disk's reading: enough for a partition table, an ESP's
#: few directories and an os-release behind a symlink, with room to spare.
MAX_BYTES = 4 * 1024 * 1024
MAX_READS = 512


class ReadFailed(Exception):
    """The disk could not be read (an I/O error, a failed qemu-img)."""


class BudgetSpent(ReadFailed):
    """The bytes or reads allowed for one disk are spent."""


class Reader(typing.Protocol):
    """A guest disk seen as bytes: ``size`` and ``read(offset, length)``.

    ``read`` returns fewer bytes than asked only at the end of the disk.
    """

    size: int

    def read(self, offset: int, length: int) -> bytes:
        ...


class FileReader:
    """A raw disk image file, read with ``pread``."""

    def __init__(self, path: str):
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.size = os.fstat(self._fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class BytesReader:
    """A disk held in memory (tests, small tables)."""

    def __init__(self, data: bytes):
        self._data = bytes(data)
        self.size = len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset:offset + length]


class Budgeted:
    """A reader that charges every read against a byte and a read budget.

    Reads outside the disk return nothing (and cost nothing): a table
    pointing past the end finds no data, not an error.  A read that would
    exceed a budget raises :class:`BudgetSpent` before reading.
    """

    def __init__(self, reader: Reader, max_bytes: int = MAX_BYTES,
                 max_reads: int = MAX_READS):
        self._reader = reader
        self.size = reader.size
        self.max_bytes = max_bytes
        self.max_reads = max_reads
        self.bytes_read = 0
        self.reads = 0

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0 or offset >= self.size:
            return b''
        length = min(length, self.size - offset)
        if (self.bytes_read + length > self.max_bytes
                or self.reads + 1 > self.max_reads):
            raise BudgetSpent(
                'reading the guest disk stopped after %d reads and %d '
                'bytes (at most %d and %d)' % (
                    self.reads, self.bytes_read, self.max_reads,
                    self.max_bytes))
        self.reads += 1
        self.bytes_read += length
        return self._reader.read(offset, length)


def exact(reader: Reader, offset: int, length: int) -> bytes | None:
    """``length`` bytes at ``offset``, or None when the disk ends first."""
    data = reader.read(offset, length)
    return data if len(data) == length else None
