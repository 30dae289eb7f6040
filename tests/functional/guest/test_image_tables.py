"""A qcow2 or sparse VMDK guest read through its own tables, and through
qemu-img where they hold what the tables reader does not read."""

import os
import struct
import subprocess
import zlib

import pytest

from glance_convert import formats
from glance_convert.formats import base
from glance_convert.formats import qcow2
from glance_convert.formats import vmdk
from glance_convert.guest import disk
from glance_convert.guest import reader
from glance_convert.pipeline import guest_view
from glance_convert.pipeline import qemu_img
from tests import guestdisks
from tests import hostile_corpus

MiB = 1024 * 1024


@pytest.fixture(scope='module')
def guest(tmp_path_factory, qemu_tools):
    d = tmp_path_factory.mktemp('qcow2-tables')
    raw = str(d / 'linux.raw')
    guestdisks.linux_uefi(raw, str(d))
    return d, raw


def _qcow2(guest, name, *opts):
    d, raw = guest
    out = str(d / name)
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2']
                   + list(opts) + [raw, out], check=True)
    return out


def _offsets(size):
    # Sectors that hold structures, cluster edges, and the last bytes.
    return [0, 512, 1 * MiB, 1 * MiB + 4096, 17 * MiB + 12345,
            size // 2 - 7, size - 4096, size - 10]


@pytest.mark.parametrize('opts', [
    (), ('-o', 'cluster_size=512'), ('-o', 'cluster_size=2M'),
    ('-o', 'compat=0.10')], ids=['64k', '512', '2M', 'v2'])
def test_the_tables_give_the_guest_bytes_qemu_img_gives(guest, opts):
    _d, raw = guest
    image = _qcow2(guest, 'plain-%s.qcow2' % '-'.join(opts or ['default']),
                   *opts)
    size = os.path.getsize(raw)
    with open(image, 'rb') as f, open(raw, 'rb') as r:
        tables = qcow2.GuestBytes(f, os.path.getsize(image))
        assert tables.size == size
        for offset in _offsets(size):
            r.seek(offset)
            assert tables.read(offset, 70000) == r.read(70000), offset
        assert tables.read(size, 10) == b''


@pytest.mark.parametrize('opts', [(), ('-o', 'cluster_size=4096')],
                         ids=['64k', '4k'])
def test_compressed_clusters_are_inflated(guest, opts):
    _d, raw = guest
    image = _qcow2(guest, 'compressed-%d.qcow2' % len(opts), '-c', *opts)
    size = os.path.getsize(raw)
    with open(image, 'rb') as f, open(raw, 'rb') as r:
        tables = qcow2.GuestBytes(f, os.path.getsize(image))
        for offset in _offsets(size):
            r.seek(offset)
            assert tables.read(offset, 70000) == r.read(70000), offset


def test_zstd_clusters_are_left_to_qemu_img(guest, tmp_path):
    _d, raw = guest
    image = _qcow2(guest, 'zstd.qcow2', '-c', '-o', 'compression_type=zstd')
    with open(image, 'rb') as f:
        tables = qcow2.GuestBytes(f, os.path.getsize(image))
        with pytest.raises(base.NotPlain):
            tables.read(0, 4096)

        def through_qemu_img():
            return guest_view.ImageReader(
                image, 'qcow2', os.path.getsize(raw),
                qemu_img.Limits(timeout=60), str(tmp_path))
        view = guest_view.TablesReader(f, os.path.getsize(image),
                                       qcow2.GuestBytes, through_qemu_img)
        facts = disk.read_disk(view)
    assert view.used == ['qemu-img']
    with reader.FileReader(raw) as r:
        assert facts == disk.read_disk(r)


def test_a_plain_qcow2_needs_no_qemu_img(guest, monkeypatch):
    _d, raw = guest
    image = _qcow2(guest, 'plain.qcow2')

    def no_qemu_img():
        raise AssertionError('qemu-img was asked')
    with open(image, 'rb') as f:
        view = guest_view.TablesReader(f, os.path.getsize(image),
                                       qcow2.GuestBytes, no_qemu_img)
        facts = disk.read_disk(view)
    assert view.used == ['tables']
    with reader.FileReader(raw) as r:
        assert facts == disk.read_disk(r)
    assert facts.complete and facts.os_release


def test_unusual_headers_are_not_read(guest):
    image = _qcow2(guest, 'extl2.qcow2', '-o', 'extended_l2=on')
    with open(image, 'rb') as f:
        with pytest.raises(base.NotPlain):
            qcow2.GuestBytes(f, os.path.getsize(image))


def test_tables_that_scatter_the_reads_stop_at_the_bound(tmp_path,
                                                         monkeypatch):
    # Data everywhere, 512-byte clusters: one L2 table per 32 KiB of guest.
    raw = tmp_path / 'full.raw'
    raw.write_bytes(os.urandom(8 * MiB))
    image = str(tmp_path / 'full.qcow2')
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', '-o',
                    'cluster_size=512', str(raw), image], check=True)
    step = 32 * 1024
    walk = range(qcow2.GuestBytes.MAX_TABLE_READS + 1)
    with open(image, 'rb') as f:
        tables = qcow2.GuestBytes(f, os.path.getsize(image))
        with pytest.raises(base.NotPlain):
            for n in walk:
                tables.read(n * step, 1)
        # Without the bound, the same walk reads a table per step.
        monkeypatch.setattr(qcow2.GuestBytes, 'MAX_TABLE_READS', 10 ** 6)
        tables = qcow2.GuestBytes(f, os.path.getsize(image))
        data = raw.read_bytes()
        for n in walk:
            assert tables.read(n * step, 1) == data[n * step:n * step + 1]
        assert tables.tables_read == len(walk)


def _vmdk(guest, name, *opts):
    d, raw = guest
    out = str(d / name)
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'vmdk']
                   + list(opts) + [raw, out], check=True)
    return out


@pytest.mark.parametrize('subformat', ['monolithicSparse',
                                       'streamOptimized'])
def test_a_sparse_vmdk_gives_the_guest_bytes_qemu_img_gives(guest,
                                                            subformat):
    _d, raw = guest
    image = _vmdk(guest, '%s.vmdk' % subformat, '-o',
                  'subformat=%s' % subformat)
    size = os.path.getsize(raw)
    with open(image, 'rb') as f, open(raw, 'rb') as r:
        tables = vmdk.GuestBytes(f, os.path.getsize(image))
        assert tables.size == size
        for offset in _offsets(size):
            r.seek(offset)
            assert tables.read(offset, 70000) == r.read(70000), offset


def test_a_vmdk_guest_needs_no_qemu_img(guest):
    _d, raw = guest
    image = _vmdk(guest, 'stream.vmdk', '-o', 'subformat=streamOptimized')

    def no_qemu_img():
        raise AssertionError('qemu-img was asked')
    with open(image, 'rb') as f:
        view = guest_view.TablesReader(f, os.path.getsize(image),
                                       vmdk.GuestBytes, no_qemu_img)
        facts = disk.read_disk(view)
    with reader.FileReader(raw) as r:
        assert facts == disk.read_disk(r)
    assert view.used == ['tables'] and facts.os_release


def test_a_descriptor_file_is_left_to_qemu_img(guest):
    image = _vmdk(guest, 'flat.vmdk', '-o', 'subformat=monolithicFlat')
    with open(image, 'rb') as f:
        with pytest.raises(base.NotPlain):
            vmdk.GuestBytes(f, os.path.getsize(image))


def _first_grain(data):
    """The sector of the first grain marker of a streamOptimized VMDK:
    guest sector 0, a plausible size, and a stream that inflates."""
    for sector in range(1, len(data) // 512):
        lba, size = struct.unpack_from('<QI', data, sector * 512)
        if lba == 0 and 0 < size <= 65536:
            start = sector * 512 + 12
            try:
                zlib.decompress(data[start:start + size])
            except zlib.error:
                continue
            return sector
    raise AssertionError('no grain marker found')


def test_a_grain_that_does_not_inflate_is_left_to_qemu_img(guest, tmp_path):
    image = _vmdk(guest, 'broken.vmdk', '-o', 'subformat=streamOptimized')
    data = bytearray(open(image, 'rb').read())
    sector = _first_grain(bytes(data))
    with open(image, 'rb') as f:       # the control: it inflates
        assert vmdk.GuestBytes(f, len(data)).read(0, 512)[510:] == b'\x55\xaa'
    # Garble the deflate stream of that grain (past its 12-byte marker).
    data[sector * 512 + 12:sector * 512 + 40] = bytes(28)
    broken = tmp_path / 'garbled.vmdk'
    broken.write_bytes(bytes(data))
    with open(broken, 'rb') as f:
        tables = vmdk.GuestBytes(f, len(data))
        with pytest.raises(base.NotPlain):
            tables.read(0, 512)


BLOCK_MAPPED = [
    ('vdi', 'vdi', []), ('vdi', 'vdi', ['-o', 'static=on']),
    ('vhd', 'vpc', ['-o', 'subformat=dynamic']),
    ('vhd', 'vpc', ['-o', 'subformat=fixed']),
    ('vhdx', 'vhdx', ['-o', 'subformat=dynamic']),
    ('vhdx', 'vhdx', ['-o', 'subformat=fixed']),
    ('ploop', 'parallels', []),
]


@pytest.mark.parametrize('fmt, driver, opts', BLOCK_MAPPED,
                         ids=['vdi', 'vdi-static', 'vhd', 'vhd-fixed',
                              'vhdx', 'vhdx-fixed', 'ploop'])
def test_block_mapped_formats_give_the_guest_bytes(guest, fmt, driver,
                                                   opts):
    d, raw = guest
    image = str(d / ('mapped-%s-%s.%s' % (driver, len(opts), fmt)))
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', driver]
                   + opts + [raw, image], check=True)
    size = os.path.getsize(raw)
    read_bytes = formats.get(fmt).guest_bytes

    def no_qemu_img():
        raise AssertionError('qemu-img was asked')
    with open(image, 'rb') as f, open(raw, 'rb') as r:
        tables = read_bytes(f, os.path.getsize(image))
        for offset in _offsets(size):
            r.seek(offset)
            want = r.read(70000)
            got = tables.read(offset, 70000)
            # A VHD's size is rounded up to a disk geometry: zeros past
            # the raw disk's end.
            assert got[:len(want)] == want, offset
            assert not any(got[len(want):]), offset
        view = guest_view.TablesReader(f, os.path.getsize(image),
                                       read_bytes, no_qemu_img)
        facts = disk.read_disk(view)
    with reader.FileReader(raw) as r:
        assert facts == disk.read_disk(r)
    assert view.used == ['tables'] and facts.os_release


def test_a_vhdx_with_a_log_is_left_to_qemu_img(guest, tmp_path):
    """A log to replay means the disk depends on the reader: not read."""
    d, raw = guest
    src = str(tmp_path / 'src.qcow2')
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw,
                    src], check=True)
    path = hostile_corpus.vhdx_needing_log_replay(
        str(tmp_path / 'log.vhdx'), src)
    plain = str(tmp_path / 'plain.vhdx')
    subprocess.run(['qemu-img', 'convert', '-f', 'qcow2', '-O', 'vhdx', src,
                    plain], check=True)
    with open(plain, 'rb') as f:            # the control reads
        formats.get('vhdx').guest_bytes(f, os.path.getsize(plain))
    with open(path, 'rb') as f:
        with pytest.raises(base.NotPlain):
            formats.get('vhdx').guest_bytes(f, os.path.getsize(path))
