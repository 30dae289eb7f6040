"""streamOptimized VMDK -> raw with several qemu-img processes."""

import os

from glance_convert.pipeline import conversion
from glance_convert.pipeline import config
from tests import fakes
from tests import imagefactory

MiB = 1024 * 1024
# Data spread over the whole disk so that every range has some.
PATTERNS = [(i * 4 * MiB + 512 * (i % 7), 256 * 1024, 0x10 + i)
            for i in range(16)]


def _convert(tmp_path, workers):
    staging = tmp_path / ('staging-%d' % workers)
    staging.mkdir()
    image = fakes.FakeImage('vmdk')
    src = imagefactory.make_image(staging, 'vmdk', size=64 * MiB,
                                  pattern_offsets=PATTERNS,
                                  name=image.image_id,
                                  options={'subformat': 'streamOptimized'})
    status = fakes.RecordingStatus()
    task, _ = fakes.make_task(image, staging, status=status,
                              parallel_workers=workers, progress_interval=0.05)
    out = task.execute('file://' + src)[len('file://'):]
    return out, image


def test_parallel_conversion_is_identical(tmp_path, monkeypatch):
    from glance_convert.pipeline import parallel
    calls = []
    real = parallel.convert_to_raw

    def spy(*args, **kwargs):
        calls.append(kwargs['workers'])
        return real(*args, **kwargs)
    monkeypatch.setattr(parallel, 'convert_to_raw', spy)
    reference = imagefactory.make_raw(tmp_path / 'ref.raw', 64 * MiB,
                                      PATTERNS)

    out, image = _convert(tmp_path, workers=3)

    assert calls == [3], 'the parallel path was not taken'
    assert imagefactory.compare(out, 'raw', reference, 'raw')
    assert image.disk_format == 'raw'
    assert image.virtual_size == 64 * MiB
    assert os.listdir(os.path.dirname(out)) == [os.path.basename(out)]


def test_one_worker_uses_the_single_process_path(tmp_path, monkeypatch):
    from glance_convert.pipeline import parallel

    def forbidden(*args, **kwargs):
        raise AssertionError('parallel path used with parallel_workers=1')
    monkeypatch.setattr(parallel, 'convert_to_raw', forbidden)
    out, image = _convert(tmp_path, workers=1)
    assert image.disk_format == 'raw'


def test_only_sparse_vmdk_to_plain_raw_is_parallel():
    settings = config.Settings.__new__(config.Settings)
    object.__setattr__(settings, 'parallel_workers', 2)
    object.__setattr__(settings, 'out_options', {})
    stream = {'format-specific': {'data': {
        'create-type': 'streamOptimized'}}}
    sparse = {'format-specific': {'data': {
        'create-type': 'monolithicSparse'}}}
    assert conversion.use_parallel('vmdk', 'raw', stream, settings)
    assert not conversion.use_parallel('vmdk', 'qcow2', stream, settings)
    assert conversion.use_parallel('vmdk', 'raw', sparse, settings)
    assert not conversion.use_parallel('vdi', 'raw', {}, settings)
    assert not conversion.use_parallel('qcow2', 'raw', {'format-specific': {
        'data': {'compat': '1.1'}}}, settings)
    object.__setattr__(settings, 'out_options', {'preallocation': 'full'})
    assert not conversion.use_parallel('vmdk', 'raw', stream, settings)


# ---- balancing: data per grain table, from the VMDK's own metadata --------

def _qemu_map_per_table(path, table_bytes):
    """Data bytes per grain table according to qemu-img map."""
    import json
    import subprocess
    out = subprocess.run(['qemu-img', 'map', '-f', 'vmdk', '--output=json',
                          path], check=True, capture_output=True).stdout
    per_table = {}
    for ext in json.loads(out):
        if not ext['data'] or ext.get('zero'):
            continue
        start, end = ext['start'], ext['start'] + ext['length']
        while start < end:
            table = start // table_bytes
            stop = min(end, (table + 1) * table_bytes)
            per_table[table] = per_table.get(table, 0) + stop - start
            start = stop
    return [(t * table_bytes, n) for t, n in sorted(per_table.items())]


def test_grain_tables_agree_with_qemu_img_map(tmp_path):
    from glance_convert.pipeline import parallel
    # Data in scattered 64 KiB-aligned runs over 96 MiB: three tables.
    patterns = [(i * 5 * MiB + (i % 3) * 64 * 1024, (i % 4 + 1) * 64 * 1024,
                 0x20 + i) for i in range(19)]
    for subformat in ('streamOptimized', 'monolithicSparse'):
        path = imagefactory.make_image(
            tmp_path, 'vmdk', size=96 * MiB, pattern_offsets=patterns,
            name='%s.vmdk' % subformat, options={'subformat': subformat})
        mine = parallel.allocation_map(path)
        assert mine == _qemu_map_per_table(path, 32 * MiB), subformat
        assert len(mine) == 3 and all(n > 0 for _o, n in mine)


def test_unusual_tables_are_not_read(tmp_path):
    import struct
    from glance_convert.pipeline import parallel
    path = imagefactory.make_image(tmp_path, 'vmdk', size=8 * MiB,
                                   options={'subformat': 'monolithicSparse'})
    good = open(path, 'rb').read()
    assert parallel.allocation_map(path)

    def patched(offset, fmt, value):
        bad = bytearray(good)
        struct.pack_into(fmt, bad, offset, value)
        target = tmp_path / 'bad.vmdk'
        target.write_bytes(bytes(bad))
        return str(target)
    # Header offsets: 44 num_gtes_per_gt (uint32), 56 gd_offset (uint64),
    # 12 capacity (uint64), 20 grain size (uint64).
    assert parallel.allocation_map(patched(44, '<I', 4096)) is None
    assert parallel.allocation_map(patched(56, '<Q', 1 << 40)) is None
    assert parallel.allocation_map(patched(12, '<Q', 1 << 50)) is None
    assert parallel.allocation_map(patched(20, '<Q', 0)) is None
    assert parallel.allocation_map(str(tmp_path / 'missing.vmdk')) is None
    (tmp_path / 'short.vmdk').write_bytes(b'KDMV')
    assert parallel.allocation_map(str(tmp_path / 'short.vmdk')) is None
