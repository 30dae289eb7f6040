"""streamOptimized VMDK -> raw with several qemu-img processes."""

import os

from glance_convert import conversion
from tests import fakes
from tests import imagefactory
from tests.unit.test_tasks import make_task

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
    task, _ = make_task(image, staging, status=status,
                        parallel_workers=workers, progress_interval=0.05)
    out = task.execute('file://' + src)[len('file://'):]
    return out, image


def test_parallel_conversion_is_identical(tmp_path, monkeypatch):
    from glance_convert import parallel
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
    from glance_convert import parallel

    def forbidden(*args, **kwargs):
        raise AssertionError('parallel path used with parallel_workers=1')
    monkeypatch.setattr(parallel, 'convert_to_raw', forbidden)
    out, image = _convert(tmp_path, workers=1)
    assert image.disk_format == 'raw'


def test_only_sparse_vmdk_to_plain_raw_is_parallel():
    settings = conversion.Settings.__new__(conversion.Settings)
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
