"""Reading binary structures from an image file, for the header parsers."""

from __future__ import annotations

import array
import struct
import sys
import zlib

from glance_convert.formats.base import Malformed
from glance_convert.formats.base import NotPlain

SECTOR = 512


def read(f, offset: int, length: int) -> bytes:
    f.seek(offset)
    return f.read(length)


def unpack(fmt: str, data: bytes, offset: int = 0):
    """``struct.unpack_from`` that says :class:`Malformed` when short."""
    try:
        return struct.unpack_from(fmt, data, offset)
    except struct.error:
        raise Malformed('header is truncated')


def uint64s(data: bytes) -> array.array:
    """Big-endian uint64 values (a short tail is dropped)."""
    values = array.array('Q')
    values.frombytes(data[:len(data) // 8 * 8])
    if sys.byteorder == 'little':
        values.byteswap()
    return values


def uint32s(data: bytes) -> array.array:
    """Little-endian uint32 values (a short tail is dropped)."""
    values = array.array('I')
    values.frombytes(data[:len(data) // 4 * 4])
    if sys.byteorder == 'big':  # pragma: no cover
        values.byteswap()
    return values


class BlockMapBytes:
    """The guest's bytes of an image whose disk is fixed-size blocks, each
    at an offset of the file or absent (zeros): VDI, VHD, VHDX.

    ``locate(index)`` gives a block's file offset, its bytes (a block
    stored compressed, already inflated), None for an absent block, or
    raises ``NotPlain`` for one it does not read.  The caller bounds how
    much is read (the guest readers' budget).
    """

    def __init__(self, f, size: int, block: int, locate):
        self._f = f
        self.size = size
        self._block = block
        self._locate = locate

    def read(self, offset: int, length: int) -> bytes:
        """``length`` guest bytes at ``offset`` (fewer at the end)."""
        out = bytearray()
        end = min(offset + length, self.size)
        while offset < end:
            index, within = divmod(offset, self._block)
            n = min(self._block - within, end - offset)
            at = self._locate(index)
            if at is None:
                out += bytes(n)
            elif isinstance(at, bytes):
                out += at[within:within + n]
            else:
                data = read(self._f, at + within, n)
                out += data + bytes(n - len(data))
            offset += n
        return bytes(out)


def entry(f, table: int, index: int, fmt: str) -> int:
    """Entry ``index`` of the table of ``fmt`` values at ``table``;
    :class:`NotPlain` if the file ends before it."""
    size = struct.calcsize(fmt)
    data = read(f, table + index * size, size)
    if len(data) < size:
        raise NotPlain('a table entry past the end of the file')
    return struct.unpack(fmt, data)[0]


def inflate(packed: bytes, size: int, wbits: int) -> bytes:
    """A block stored deflated, inflated to ``size`` bytes at most and
    padded with zeros to ``size``; :class:`NotPlain` if it does not
    inflate."""
    try:
        data = zlib.decompressobj(wbits).decompress(packed, size)
    except zlib.error as exc:
        raise NotPlain('a block that does not inflate: %s' % exc)
    return data + bytes(size - len(data))


class Recent:
    """The last ``limit`` values loaded, by key: the tables and blocks a
    guest reader returns to."""

    def __init__(self, limit: int):
        self._limit = limit
        self._values: dict = {}

    def get(self, key, load):
        """The value of ``key``, from ``load()`` when not kept."""
        value = self._values.pop(key, None)
        if value is None:
            value = load()
        self._values[key] = value             # most recent last
        while len(self._values) > self._limit:
            del self._values[next(iter(self._values))]
        return value
