"""Reading binary structures from an image file, for the header parsers."""

from __future__ import annotations

import array
import struct
import sys

from glance_convert.formats.base import Malformed

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
