"""Compression recognised from whole stream headers, never from a magic
number alone."""

import gzip
import os
import struct
import subprocess
import zlib

import pytest

from glance_convert.pipeline import stream_headers

TOOLS = {'gzip': ['gzip', '-c'], 'bzip2': ['bzip2', '-c'],
         'xz': ['xz', '-c', '-T1'], 'zstd': ['zstd', '-q', '-c']}
MAGIC = {'gzip': b'\x1f\x8b\x08', 'bzip2': b'BZh9', 'xz': b'\xfd7zXZ\x00',
         'zstd': b'\x28\xb5\x2f\xfd', 'zip': b'PK\x03\x04'}


@pytest.fixture
def disk(tmp_path):
    """A small raw 'disk': an MBR-like sector and some data."""
    path = tmp_path / 'disk.raw'
    path.write_bytes(os.urandom(512) + bytes(300 * 1024) + os.urandom(4096))
    return path


@pytest.mark.parametrize('kind', sorted(TOOLS))
def test_compressed_by_the_real_tool(tmp_path, disk, kind):
    out = tmp_path / ('disk.' + kind)
    with open(out, 'wb') as f:
        subprocess.run(TOOLS[kind] + [str(disk)], stdout=f, check=True)
    assert stream_headers.compression_of(str(out)) == kind


def test_zip_with_one_member(tmp_path, disk):
    out = tmp_path / 'disk.zip'
    subprocess.run(['zip', '-q', '-j', str(out), str(disk)], check=True)
    assert stream_headers.compression_of(str(out)) == 'zip'


@pytest.mark.parametrize('kind', sorted(MAGIC))
def test_a_raw_disk_that_starts_with_a_magic_number(tmp_path, kind):
    # The magic, then what a disk holds: not a stream of that kind.
    for filler in (bytes(256 * 1024), os.urandom(256 * 1024)):
        path = tmp_path / 'raw'
        path.write_bytes(MAGIC[kind] + filler)
        assert stream_headers.compression_of(str(path)) is None, filler[:8]


def test_a_plain_disk_is_not_compressed(disk):
    assert stream_headers.compression_of(str(disk)) is None


def _gzip_with_header_crc(data, crc=None):
    header = b'\x1f\x8b\x08\x02' + bytes(4) + b'\x00\x03'
    crc = zlib.crc32(header) & 0xFFFF if crc is None else crc
    body = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = body.compress(data) + body.flush()
    return (header + struct.pack('<H', crc) + deflated
            + struct.pack('<II', zlib.crc32(data), len(data)))


def test_gzip_header_crc_is_checked(tmp_path):
    data = os.urandom(1000) * 50
    good = tmp_path / 'good.gz'
    good.write_bytes(_gzip_with_header_crc(data))
    assert gzip.decompress(good.read_bytes()) == data   # a valid stream
    assert stream_headers.compression_of(str(good)) == 'gzip'
    bad = tmp_path / 'bad.gz'
    bad.write_bytes(_gzip_with_header_crc(data, crc=0x1234))
    assert stream_headers.compression_of(str(bad)) is None


def test_xz_stream_flags_crc_is_checked(tmp_path, disk):
    out = tmp_path / 'disk.xz'
    with open(out, 'wb') as f:
        subprocess.run(TOOLS['xz'] + [str(disk)], stdout=f, check=True)
    data = bytearray(out.read_bytes())
    data[8] ^= 0xFF   # the stream flags' CRC32
    out.write_bytes(bytes(data))
    assert stream_headers.compression_of(str(out)) is None


def test_a_zstd_bomb_is_probed_within_bounds(tmp_path):
    import zstandard
    path = tmp_path / 'zeros.zst'
    path.write_bytes(zstandard.ZstdCompressor().compress(bytes(64 << 20)))
    assert stream_headers.compression_of(str(path)) == 'zstd'


def test_a_missing_file_is_left_to_the_pipeline(tmp_path):
    assert stream_headers.compression_of(str(tmp_path / 'gone')) is None
