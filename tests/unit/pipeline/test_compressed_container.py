"""Decompression of compressed uploads and the upload's SHA-256.

Compressed files are made here with Python's own modules and zstandard;
tests/functional/pipeline/test_compressed_images.py uses the command-line
tools and real disk images.
"""

import bz2
import gzip
import hashlib
import io
import lzma
import os
import threading
import zipfile

import pytest
import zstandard

from glance_convert import errors
from glance_convert import units
from glance_convert.host import workspace as ws_mod
from glance_convert.pipeline import hold
from glance_convert.pipeline import upload_hash
from glance_convert.pipeline.containers import compressed

MiB = units.MiB


def payload(size=3 * MiB):
    """Data with holes: a non-zero head, zeros, a non-zero tail."""
    head = bytes(range(256)) * 1024          # 256 KiB of data
    tail = b'\xa5' * (64 * 1024)
    return head + bytes(size - len(head) - len(tail)) + tail


def zip_bytes(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


COMPRESS = {
    'gzip': gzip.compress,
    'bzip2': bz2.compress,
    'xz': lambda d: lzma.compress(d, format=lzma.FORMAT_XZ),
    # As the zstd command does: with the content checksum.
    'zstd': lambda d: zstandard.ZstdCompressor(
        write_checksum=True).compress(d),
    'zip': lambda d: zip_bytes([('disk.img', d)]),
}


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize('kind', compressed.KINDS)
def test_decompress_each_kind_with_hash_and_holes(tmp_path, kind):
    data = payload()
    blob = COMPRESS[kind](data)
    # A misleading name: detection reads bytes only.
    src = write(tmp_path, 'upload.tar', blob)
    dst = str(tmp_path / 'out')

    assert compressed.detect(src) == kind
    result = compressed.decompress(src, dst, limit=10 * MiB)

    with open(dst, 'rb') as f:
        assert f.read() == data
    assert result.compression == kind
    assert result.size == len(data)
    assert result.source_size == len(blob)
    assert result.source_sha256 == hashlib.sha256(blob).hexdigest()
    # The 2.6 MiB run of zeros stayed a hole.
    assert units.allocated_bytes(dst) < len(data) // 2


def test_multi_stream_gzip_and_xz_and_zstd_frames(tmp_path):
    a, b = b'A' * 100000, b'B' * 70000
    for kind in ('gzip', 'xz', 'zstd', 'bzip2'):
        blob = COMPRESS[kind](a) + COMPRESS[kind](b)
        src = write(tmp_path, kind, blob)
        dst = str(tmp_path / (kind + '.out'))
        result = compressed.decompress(src, dst, limit=MiB)
        with open(dst, 'rb') as f:
            assert f.read() == a + b, kind
        assert result.source_sha256 == hashlib.sha256(blob).hexdigest()


def test_not_compressed_is_refused(tmp_path):
    src = write(tmp_path, 'x.gz', b'QFI\xfb' + bytes(1000))
    with pytest.raises(errors.ImageRejected) as exc:
        compressed.decompress(src, str(tmp_path / 'out'), limit=MiB)
    assert 'not compressed with gzip' in str(exc.value)
    assert not os.path.exists(tmp_path / 'out')


@pytest.mark.parametrize('kind', compressed.KINDS)
def test_bomb_is_stopped_at_the_limit(tmp_path, kind):
    data = bytes(64 * MiB)
    src = write(tmp_path, 'bomb', COMPRESS[kind](data))
    dst = str(tmp_path / 'out')
    # Without the limit the data really is that large.
    assert compressed.decompress(src, dst, limit=len(data)).size == len(data)
    os.unlink(dst)

    written = []
    with pytest.raises(errors.ImageRejected) as exc:
        compressed.decompress(src, dst, limit=8 * MiB,
                              on_progress=lambda r, w: written.append(w))
    assert 'larger than the limit of 8 MiB' in str(exc.value)
    assert max(written) <= 8 * MiB
    assert not os.path.exists(dst)


@pytest.mark.parametrize('kind', compressed.KINDS)
def test_truncated_stream_is_refused(tmp_path, kind):
    blob = COMPRESS[kind](os.urandom(600000))
    src = write(tmp_path, 'cut', blob[:len(blob) * 2 // 3])
    dst = str(tmp_path / 'out')
    with pytest.raises(errors.ImageRejected) as exc:
        compressed.decompress(src, dst, limit=10 * MiB)
    message = str(exc.value)
    assert message.startswith('Image rejected: the %s data is' % kind)
    assert 'truncated' in message or 'corrupt' in message
    assert not os.path.exists(dst)


def test_zstandard_alone_misses_truncation(tmp_path):
    """Why the frame walk exists: the stream reader ends quietly."""
    data = os.urandom(600000)
    blob = COMPRESS['zstd'](data)[:-1000]
    reader = zstandard.ZstdDecompressor().stream_reader(
        io.BytesIO(blob), read_across_frames=True)
    assert len(reader.read()) < len(data)  # partial, and no error
    src = write(tmp_path, 'cut.zst', blob)
    with pytest.raises(errors.ImageRejected) as exc:
        compressed.decompress(src, str(tmp_path / 'out'), limit=MiB)
    assert 'zstd data is truncated' in str(exc.value)


@pytest.mark.parametrize('kind', compressed.KINDS)
def test_corrupt_stream_is_refused(tmp_path, kind):
    blob = bytearray(COMPRESS[kind](os.urandom(300000)))
    middle = len(blob) // 2
    blob[middle:middle + 64] = bytes(64)
    src = write(tmp_path, 'bad', bytes(blob))
    with pytest.raises(errors.ImageRejected) as exc:
        compressed.decompress(src, str(tmp_path / 'out'), limit=MiB)
    assert str(exc.value).startswith('Image rejected: the %s data is'
                                     % kind)
    assert not os.path.exists(tmp_path / 'out')


def test_zip_with_two_members_is_refused(tmp_path):
    src = write(tmp_path, 'two.zip', zip_bytes([('a.img', b'a' * 10),
                                                ('b.img', b'b' * 10)]))
    with pytest.raises(errors.ImageRejected) as exc:
        compressed.decompress(src, str(tmp_path / 'out'), limit=MiB)
    assert str(exc.value) == ('Image rejected: a zip upload must hold '
                              'exactly one file, not 2')


def test_prefixed_zip_is_not_taken_for_a_zip(tmp_path):
    """Detection reads the first bytes only, like every other kind."""
    blob = b'#!stub\n' * 100 + zip_bytes([('disk.img', payload())])
    src = write(tmp_path, 'sfx.zip', blob)
    assert zipfile.is_zipfile(src)  # zipfile itself would take it
    with pytest.raises(errors.ImageRejected) as exc:
        compressed.decompress(src, str(tmp_path / 'out'), limit=10 * MiB)
    assert 'not compressed with gzip' in str(exc.value)


def test_trailing_bytes_are_hashed(tmp_path):
    """xz ignores what follows its stream; the hash must not."""
    blob = COMPRESS['xz'](b'data' * 1000) + b'trailing garbage'
    src = write(tmp_path, 'pad.xz', blob)
    result = compressed.decompress(src, str(tmp_path / 'out'), limit=MiB)
    assert result.size == 4000
    assert result.source_size == len(blob)
    assert result.source_sha256 == hashlib.sha256(blob).hexdigest()


def test_hashing_reader_catches_up_on_reads_out_of_order(tmp_path):
    data = os.urandom(3 * MiB)
    src = write(tmp_path, 'f', data)
    with open(src, 'rb') as f:
        reader = upload_hash.HashingReader(f)
        reader.seek(2 * MiB)
        assert reader.read(100) == data[2 * MiB:2 * MiB + 100]
        reader.seek(0)
        assert reader.read(10) == data[:10]
        # The file is read (and hashed) a whole block at a time.
        assert reader.hashed == compressed.CHUNK
        assert reader.finish().result() == hashlib.sha256(data).hexdigest()


class _ThreadRecordingSha:
    """hashlib.sha256 that notes which thread hashed how many bytes."""

    def __init__(self, seen, real=hashlib.sha256):
        self._sha = real()
        self._seen = seen

    def update(self, data):
        self._seen.append((threading.get_ident(), len(data)))
        self._sha.update(data)

    def hexdigest(self):
        return self._sha.hexdigest()


@pytest.mark.parametrize('kind', ['gzip', 'zstd'])
def test_the_hash_runs_in_a_second_thread_on_large_blocks(tmp_path,
                                                          monkeypatch, kind):
    """The checksum must cost no wall-clock time: another thread (another
    core, hashlib releases the GIL) hashes the upload in blocks large
    enough for that, whatever size the decompressor reads."""
    seen = []
    monkeypatch.setattr(upload_hash.hashlib, 'sha256',
                        lambda: _ThreadRecordingSha(seen))
    blob = COMPRESS[kind](os.urandom(3 * MiB))
    src = write(tmp_path, 'in', blob)

    result = compressed.decompress(src, str(tmp_path / 'out'), limit=8 * MiB)

    assert result.source_sha256 == hashlib.new('sha256', blob).hexdigest()
    threads = {ident for ident, _ in seen}
    assert threading.get_ident() not in threads
    assert sum(n for _, n in seen) == len(blob)
    # Every block but the last is a whole CHUNK: 8 KiB reads of the
    # stdlib decompressors are served from memory, not hashed one by one.
    assert all(n == compressed.CHUNK for _, n in seen[:-1])


def test_a_failed_decompression_stops_its_hash_thread(tmp_path):
    src = write(tmp_path, 'bad.gz', gzip.compress(os.urandom(2 * MiB))[:-100])
    before = threading.active_count()
    with pytest.raises(errors.ImageRejected):
        compressed.decompress(src, str(tmp_path / 'out'), limit=8 * MiB)
    assert threading.active_count() == before
    assert not (tmp_path / 'out').exists()


def test_cancel_and_deadline_stop_decompression(tmp_path):
    src = write(tmp_path, 'big.gz', gzip.compress(bytes(8 * MiB)))
    with pytest.raises(errors.ConversionCancelled):
        compressed.decompress(src, str(tmp_path / 'a'), limit=16 * MiB,
                              should_cancel=lambda: True)
    with pytest.raises(errors.ConversionFailed) as exc:
        compressed.decompress(src, str(tmp_path / 'b'), limit=16 * MiB,
                              deadline=0)
    assert 'longer than the time allowed' in str(exc.value)
    assert sorted(os.listdir(tmp_path)) == ['big.gz']


def test_expected_sha256_is_normalised_and_checked():
    good = 'AB' * 32
    assert upload_hash.expected_sha256({upload_hash.SOURCE_SHA256: good}) == \
        good.lower()
    assert upload_hash.expected_sha256({}) is None
    with pytest.raises(errors.ImageRejected) as exc:
        upload_hash.expected_sha256({upload_hash.SOURCE_SHA256: 'md5:1234'})
    assert '64 hexadecimal digits' in str(exc.value)
    upload_hash.verify_sha256('ab' * 32, 'ab' * 32)
    upload_hash.verify_sha256('ab' * 32, None)
    with pytest.raises(errors.ImageRejected) as exc:
        upload_hash.verify_sha256('ab' * 32, 'cd' * 32)
    assert str(exc.value) == (
        'Image rejected: the SHA-256 of the upload is %s, not %s as the '
        'property glance_convert_source_sha256 says' % ('ab' * 32, 'cd' * 32))


def test_background_hash(tmp_path):
    data = os.urandom(3 * MiB + 17)
    src = write(tmp_path, 'plain', data)
    assert upload_hash.BackgroundHash(src).result() == \
        hashlib.sha256(data).hexdigest()
    hasher = upload_hash.BackgroundHash(src)
    hasher.cancel()
    with pytest.raises(errors.ConversionError):
        upload_hash.BackgroundHash(str(tmp_path / 'missing')).result()


def _workspace(tmp_path, **kw):
    work = tmp_path / 'work'
    work.mkdir(exist_ok=True)
    args = dict(lock_dir=None, max_concurrent=1, reserved_bytes=0,
                max_bytes=0)
    args.update(kw)
    return ws_mod.Workspace(str(work), **args)


IMAGE_ID = 'c5f1a0d2-0000-4000-8000-000000000001'


def test_decompressed_holds_slot_and_records_work_file(tmp_path):
    ws = _workspace(tmp_path)
    data = payload()
    src = write(tmp_path, 'up.xz', COMPRESS['xz'](data))
    with compressed.decompressed(src, image_id=IMAGE_ID, work_dir=ws.work_dir,
                                 limit=10 * MiB, workspace=ws) as prepared:
        assert open(prepared.path, 'rb').read() == data
        assert prepared.path in ws.usage()['paths']
        # The slot is held: a second conversion cannot get one now...
        with pytest.raises(errors.WorkspaceError):
            with ws.slot('other', timeout=0):
                pass
        # ...but the conversion inside joins the hold and reuses it:
        # with slot_timeout=0 a second slot would fail at once.
        with hold.held(prepared.workspace, image_id=IMAGE_ID,
                       work_dir=ws.work_dir, slot_timeout=0) as inner:
            inner.reserve(1, step='convert')
    assert not os.path.exists(prepared.path)
    assert ws.usage() == {'reservations': 0, 'reserved_bytes': 0,
                          'paths': []}


def test_decompressed_keep_hands_the_file_on(tmp_path):
    ws = _workspace(tmp_path)
    src = write(tmp_path, 'up.gz', COMPRESS['gzip'](payload()))
    with compressed.decompressed(src, image_id=IMAGE_ID, work_dir=ws.work_dir,
                                 limit=10 * MiB, workspace=ws) as prepared:
        prepared.keep()
    assert os.path.exists(prepared.path)


def test_decompressed_refusal_leaves_nothing(tmp_path):
    ws = _workspace(tmp_path)
    src = write(tmp_path, 'bomb.zst', COMPRESS['zstd'](bytes(32 * MiB)))
    with pytest.raises(errors.ImageRejected):
        with compressed.decompressed(src, image_id=IMAGE_ID,
                                     work_dir=ws.work_dir, limit=4 * MiB,
                                     workspace=ws):
            pytest.fail('a bomb must not reach the conversion')
    assert os.listdir(ws.work_dir) == [
        n for n in os.listdir(ws.work_dir) if '.glance-convert.' not in n]
    assert ws.usage()['paths'] == []


def test_decompressed_grows_reservation_then_refuses_when_full(
        tmp_path, monkeypatch):
    """Space is reserved as data grows; a full host stops the import."""
    monkeypatch.setattr(compressed, 'FIRST_RESERVATION', 2 * MiB)
    data = os.urandom(12 * MiB)
    src = write(tmp_path, 'big.gz', gzip.compress(data, compresslevel=1))
    roomy = _workspace(tmp_path, max_bytes=64 * MiB)
    peaks = []
    with compressed.decompressed(
            src, image_id=IMAGE_ID, work_dir=roomy.work_dir,
            limit=64 * MiB, workspace=roomy,
            on_progress=lambda r, w: peaks.append(
                roomy.usage()['reserved_bytes'])) as prepared:
        assert prepared.unpacked.size == len(data)
    assert max(peaks) >= len(data)

    tight = _workspace(tmp_path, max_bytes=8 * MiB)
    with pytest.raises(errors.WorkspaceError):
        with compressed.decompressed(src, image_id=IMAGE_ID,
                                     work_dir=tight.work_dir, limit=64 * MiB,
                                     workspace=tight):
            pytest.fail('must not fit')
    assert tight.usage()['paths'] == []
    assert not any('.glance-convert.' in n
                   for n in os.listdir(tight.work_dir))
