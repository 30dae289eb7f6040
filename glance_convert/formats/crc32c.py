"""CRC-32C (Castagnoli), the checksum of VHDX headers and tables.

Written out because no library for it is in OpenStack's requirements.
"""

from __future__ import annotations

_POLY = 0x82f63b78   # reflected Castagnoli polynomial


def _table() -> list[int]:
    table = []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ (_POLY if n & 1 else 0)
        table.append(n)
    return table


def _gf2_times(matrix: list[int], vector: int) -> int:
    """A 32x32 bit matrix (its columns) times a 32-bit vector."""
    total, i = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _zero_byte_powers() -> list[list[int]]:
    """Operators that run the CRC register over 1, 2, 4 ... zero bytes.

    Over zero bytes the register changes linearly, so a run of them is a
    matrix power: a few dozen steps instead of one per byte.
    """
    op = [_POLY] + [1 << n for n in range(31)]   # one zero bit
    for _ in range(3):                                   # eight bits
        op = [_gf2_times(op, column) for column in op]
    powers = [op]
    for _ in range(31):                                  # up to 2 GiB
        op = [_gf2_times(op, column) for column in op]
        powers.append(op)
    return powers


_TABLE = _table()
_ZERO_RUNS = _zero_byte_powers()


def crc32c(data: bytes) -> int:
    """The CRC-32C of ``data``.

    It runs over 136 KiB per image (two headers, two region tables), which
    are nearly all zeros: trailing zeros are skipped in matrix steps, so
    only the bytes in use are walked one by one.
    """
    used = data.rstrip(b'\0')
    crc = 0xffffffff
    table = _TABLE
    for byte in used:
        crc = table[(crc ^ byte) & 0xff] ^ (crc >> 8)
    zeros, k = len(data) - len(used), 0
    while zeros:
        if zeros & 1:
            crc = _gf2_times(_ZERO_RUNS[k], crc)
        zeros >>= 1
        k += 1
    return crc ^ 0xffffffff
