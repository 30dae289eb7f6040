"""The VHDX header parser on files qemu-img wrote, edited where qemu's
reading of them is the point: our verdict must be qemu's or stricter."""

import os
import random
import shutil
import struct

import pytest

from glance_convert import errors
from glance_convert import formats
from glance_convert.formats import crc32c
from glance_convert.formats import vhdx
from glance_convert.pipeline import inspection
from glance_convert.pipeline import qemu_img
from tests import hostile_corpus as hc
from tests import imagefactory

MiB = 1024 * 1024
POLICY = inspection.Policy()


@pytest.fixture(scope='module')
def plain(tmp_path_factory, qemu_tools):
    d = tmp_path_factory.mktemp('vhdx')
    return imagefactory.make_image(d, 'vhdx')


@pytest.fixture
def copy(plain, tmp_path):
    path = str(tmp_path / 'copy.vhdx')
    shutil.copyfile(plain, path)
    return path


def qemu_opens(path):
    try:
        qemu_img.info(path, 'vhdx', qemu_img.Limits(timeout=60))
        return True
    except qemu_img.QemuImgError:
        return False


def verdict(path):
    try:
        inspection.inspect_bytes(path, 'vhdx', POLICY)
        return 'accepted'
    except errors.ImageRejected as exc:
        return exc.reason


def test_crc32c_check_value():
    # The check value of CRC-32C (Castagnoli) over the ASCII digits 1-9.
    assert crc32c.crc32c(b'123456789') == 0xe3069283


@pytest.mark.parametrize('used, zeros', [(0, 1), (1, 0), (5, 8), (100, 255),
                                         (4000, 4096), (48, 65488)])
def test_crc32c_skips_trailing_zeros_without_changing_the_sum(used, zeros):
    """The matrix steps over zero runs agree with the corpus's bit-by-bit
    CRC, which shares no code with the parser's."""
    data = random.Random(used).randbytes(used) + bytes(zeros)
    assert crc32c.crc32c(data) == hc._crc32c(data)


def test_a_plain_vhdx_reads_as_qemu_reads_it(plain):
    h = formats.parse(plain, 'vhdx')
    info = imagefactory.info(plain, 'vhdx')
    assert h.virtual_size == info['virtual-size'] == imagefactory.DEFAULT_SIZE
    assert h.subformat == 'dynamic' and h.size_claims_agree()
    assert not (h.parent or h.log or h.corrupt or h.unknown_required)


@pytest.mark.parametrize('which', ['older', 'current'])
def test_one_damaged_header_is_a_torn_update_not_corruption(copy, which):
    """qemu uses the other valid header; so do we."""
    current = hc._vhdx_current_header(copy)
    other = [o for o in hc.VHDX_HEADERS if o != current][0]
    hc._patch(copy, (current if which == 'current' else other) + 4,
              b'\xde\xad\xbe\xef')
    assert qemu_opens(copy)
    assert verdict(copy) == 'accepted'


def test_a_log_in_the_older_header_is_not_the_current_log(copy):
    """Only the current header's log counts, for qemu as for us."""
    current = hc._vhdx_current_header(copy)
    other = [o for o in hc.VHDX_HEADERS if o != current][0]
    hc._patch(copy, other + 48, os.urandom(16))
    hc._vhdx_checksum(copy, other, 4096)
    assert qemu_opens(copy)
    assert verdict(copy) == 'accepted'
    # The same GUID in the current header: refused (the control).
    hc._patch(copy, current + 48, os.urandom(16))
    hc._vhdx_checksum(copy, current, 4096)
    assert 'not closed cleanly' in verdict(copy)


def test_two_different_headers_with_one_sequence_number(copy):
    current = hc._vhdx_current_header(copy)
    other = [o for o in hc.VHDX_HEADERS if o != current][0]
    hc._patch(copy, other + 8, hc._read(copy, current + 8, 8))
    hc._vhdx_checksum(copy, other, 4096)
    assert not qemu_opens(copy)
    assert verdict(copy) == 'the image is corrupt'


def test_a_data_block_beyond_the_end_is_corrupt(copy):
    bat, _length = hc._vhdx_regions(copy)[hc.VHDX_BAT_REGION]
    entry, = struct.unpack('<Q', hc._read(copy, bat, 8))
    assert entry & 7 == vhdx.VHDX_FULLY_PRESENT
    os.truncate(copy, (entry >> 20) << 20)   # the block is cut off
    assert verdict(copy) == 'the image is corrupt'


def test_a_block_inside_the_metadata_is_corrupt(copy):
    regions = hc._vhdx_regions(copy)
    bat, _length = regions[hc.VHDX_BAT_REGION]
    metadata, _length = regions[hc.VHDX_METADATA_REGION]
    entry, = struct.unpack('<Q', hc._read(copy, bat, 8))
    hc._patch(copy, bat, struct.pack('<Q', (metadata >> 20 << 20)
                                     | (entry & 7)))
    assert not qemu_opens(copy)
    assert verdict(copy) == 'the image is corrupt'


def test_a_vhdx_shorter_than_its_header_area_is_unreadable(tmp_path):
    path = str(tmp_path / 'short.vhdx')
    with open(path, 'wb') as f:
        f.write(vhdx.VHDX_SIGNATURE.ljust(64 * 1024, b'\0'))
    assert 'too short or damaged' in verdict(path)


@pytest.mark.parametrize('size', [MiB, 10 << 30, 1 << 40])
def test_large_sizes_agree_with_the_bat(tmp_path, size, qemu_tools):
    path = str(tmp_path / 'big.vhdx')
    imagefactory.run_tool(['qemu-img', 'create', '-q', '-f', 'vhdx', path,
                           str(size)])
    h = formats.parse(path, 'vhdx')
    assert h.virtual_size == size and h.size_claims_agree()
