"""Which qemu-img processes one conversion starts, and why.

The plugin's overhead over a bare ``qemu-img convert`` is mostly process
starts.  Every safety check stays (``qemu-img info`` of the source,
``qemu-img check`` where qemu has one, the output inspection); what goes:
``qemu-img measure`` where its answer is known or not needed, and
``qemu-img info`` of a raw or qcow2 output, whose answer the output
inspection already read.
"""

import os
import shutil

import pytest

from glance_convert.pipeline import conversion
from glance_convert import errors
from glance_convert import formats
from glance_convert.pipeline import qemu_img
from glance_convert.host import workspace
from tests import hostile_corpus
from tests import imagefactory

MiB = 1024 * 1024
GiB = 1024 * MiB
IMAGE = '6a1f0c3e-3333-4c4c-8e8e-00112233aabb'


@pytest.fixture
def calls():
    """The qemu-img subcommands run, in order."""
    seen = []

    def spy(runner):
        def run(args, limits, **options):
            seen.append(args[0])
            return runner(args, limits, **options)
        return run

    with qemu_img.using(spy):
        yield seen


def _convert(tmp_path, fmt, target, ws=None, size=16 * MiB, name=None):
    staging = tmp_path / 'staging'
    staging.mkdir(exist_ok=True)
    src = imagefactory.make_image(staging, fmt, size=size,
                                  name=name or 'src.%s' % fmt)
    work = str(tmp_path / 'work') if ws is None else ws.work_dir
    os.makedirs(work, exist_ok=True)
    result = conversion.convert_image(
        src, fmt, image_id=IMAGE, work_dir=work,
        settings=hostile_corpus.pipeline_settings(target), workspace=ws)
    return src, result


@pytest.mark.parametrize('fmt,target,expected', [
    # info and check of the source (qcow2, vmdk, vdi and vhdx have a
    # check).
    ('qcow2', 'raw', ['info', 'check', 'convert']),
    ('vdi', 'raw', ['info', 'check', 'convert']),
    ('vhdx', 'raw', ['info', 'check', 'convert']),
    # qemu-img has no check for raw and vpc.
    ('vhd', 'raw', ['info', 'convert']),
    # No measure while the upper bound fits; the qcow2 output's size is
    # read from its checked header.
    ('raw', 'qcow2', ['info', 'convert']),
    # vhdx output too: its size is one metadata item of the checked header.
    ('raw', 'vhdx', ['info', 'convert']),
    # vmdk output: still verified by qemu-img info as well.
    ('raw', 'vmdk', ['info', 'convert', 'info']),
])
def test_qemu_img_runs_only_what_the_checks_need(tmp_path, calls, fmt,
                                                 target, expected,
                                                 qemu_tools):
    src, result = _convert(tmp_path, fmt, target)
    # info and check of the source run at the same time, in either order.
    assert sorted(calls[:2]) == sorted(expected[:2])
    assert calls[2:] == expected[2:]
    # VHD rounds up to its CHS geometry.
    assert 16 * MiB <= result.virtual_size < 17 * MiB
    assert imagefactory.compare(result.path, target, src, fmt)


def _workspace(tmp_path, capacity):
    work = tmp_path / 'work'
    work.mkdir(exist_ok=True)
    return workspace.Workspace(
        str(work), lock_dir=str(tmp_path / 'locks'), max_concurrent=2,
        reserved_bytes=0, max_bytes=0,
        disk_space=lambda _path: (capacity, capacity))


def test_measure_runs_when_the_upper_bound_does_not_fit(tmp_path, calls,
                                                        qemu_tools):
    virtual = 64 * MiB
    bound = formats.qcow2.FORMAT.upper_bound(
        virtual, hostile_corpus.pipeline_settings('qcow2').out_options)
    # Room for the measured need (the data, about 1 MiB) but not for the
    # bound (the virtual size and more).
    ws = _workspace(tmp_path, capacity=virtual // 2)
    assert bound > virtual // 2
    src, result = _convert(tmp_path, 'raw', 'qcow2', ws=ws, size=virtual)
    assert calls == ['info', 'measure', 'convert']
    assert imagefactory.compare(result.path, 'qcow2', src, 'raw')


@pytest.mark.parametrize('fmt', ['qcow2', 'vmdk', 'vhd'])
def test_sparse_raw_output_is_measured_when_its_size_does_not_fit(
        tmp_path, calls, fmt, qemu_tools):
    # A 64 MiB disk holding about 1 MiB: the virtual size does not fit in
    # 32 MiB of work space, the data does.
    virtual = 64 * MiB
    ws = _workspace(tmp_path, capacity=virtual // 2)
    src, result = _convert(tmp_path, fmt, 'raw', ws=ws, size=virtual)
    assert calls[-2:] == ['measure', 'convert']
    assert imagefactory.compare(result.path, 'raw', src, fmt)
    assert os.stat(result.path).st_blocks * 512 < virtual // 2


def test_preallocated_raw_output_needs_its_whole_size(tmp_path, calls,
                                                      qemu_tools):
    import dataclasses
    virtual = 64 * MiB
    ws = _workspace(tmp_path, capacity=virtual // 2)
    settings = dataclasses.replace(hostile_corpus.pipeline_settings('raw'),
                                   out_options={'preallocation': 'falloc'})
    src = imagefactory.make_image(tmp_path, 'qcow2', size=virtual)
    with pytest.raises(errors.WorkspaceError) as exc_info:
        conversion.convert_image(src, 'qcow2', image_id=IMAGE,
                                 work_dir=ws.work_dir, settings=settings,
                                 workspace=ws, slot_timeout=0)
    assert 'Not enough space' in str(exc_info.value)
    assert 'measure' not in calls and 'convert' not in calls


def test_measured_need_that_does_not_fit_is_refused(tmp_path, calls,
                                                    qemu_tools):
    ws = _workspace(tmp_path, capacity=64 * 1024)
    with pytest.raises(errors.WorkspaceError) as exc_info:
        _convert(tmp_path, 'raw', 'qcow2', ws=ws, size=64 * MiB)
    assert 'Not enough space' in str(exc_info.value)
    assert calls == ['info', 'measure']
    assert os.listdir(ws.work_dir) == []


def _leaving(tmp, replacement):
    """A qemu-img whose convert leaves a copy of ``replacement`` at
    ``tmp``, as a broken or compromised one could (qemu_img.using)."""
    def wrap(runner):
        def run(args, limits, **options):
            result = runner(args, limits, **options)
            if args[0] == 'convert':
                shutil.copyfile(replacement, tmp)
            return result
        return run
    return wrap


@pytest.mark.parametrize('target', ['raw', 'qcow2'])
def test_output_smaller_than_the_source_fails_verification(tmp_path, target,
                                                           qemu_tools):
    source = 'qcow2' if target == 'raw' else 'raw'
    small = imagefactory.make_image(tmp_path, target, size=4 * MiB)
    _src, result = _convert(tmp_path, source, target, size=8 * MiB)
    assert result.converted and result.virtual_size == 8 * MiB  # control
    os.remove(result.path)
    tmp = conversion.work_paths(str(tmp_path / 'work'), IMAGE, target)[0]
    with pytest.raises(errors.ConversionFailed) as exc_info, \
            qemu_img.using(_leaving(tmp, small)):
        _convert(tmp_path, source, target, size=8 * MiB)
    assert 'virtual size %d (source %d)' % (4 * MiB, 8 * MiB) in \
        exc_info.value.detail
    assert os.listdir(tmp_path / 'work') == []


def test_qcow2_output_that_is_not_qcow2_fails_verification(tmp_path,
                                                           qemu_tools):
    vdi = imagefactory.make_image(tmp_path, 'vdi', size=4 * MiB)
    tmp = conversion.work_paths(str(tmp_path / 'work'), IMAGE, 'qcow2')[0]
    with pytest.raises(errors.ConversionFailed), \
            qemu_img.using(_leaving(tmp, vdi)):
        _convert(tmp_path, 'raw', 'qcow2', size=4 * MiB)
    assert os.listdir(tmp_path / 'work') == []


@pytest.mark.parametrize('target,cluster', [
    ('qcow2', 65536), ('qcow2', 512), ('qcow2', 2 * MiB), ('vmdk', None),
    ('vdi', None), ('vpc', None), ('vhdx', None)])
def test_upper_bound_covers_a_fully_allocated_output(target, cluster,
                                                     qemu_tools, tmp_path):
    """The bound is at least qemu-img measure's fully-allocated size."""
    import json
    import subprocess
    settings = hostile_corpus.pipeline_settings(target)
    opts = []
    if cluster:
        settings.out_options['cluster_size'] = cluster
        opts = ['-o', 'cluster_size=%d' % cluster]
    for virtual in (64 * MiB, 10 * GiB, 1024 * GiB):
        bound = formats.get('vhd' if target == 'vpc' else target
                            ).upper_bound(virtual, settings.out_options)
        if target == 'vhdx':
            # No measure for vhdx: a fixed VHDX has every block allocated
            # (qemu-img creates it sparse, so this is quick).
            path = str(tmp_path / 'fixed.vhdx')
            subprocess.run(['qemu-img', 'create', '-q', '-f', 'vhdx', '-o',
                            'subformat=fixed', path, str(virtual)],
                           check=True)
            assert bound >= os.path.getsize(path), virtual
            os.unlink(path)
            continue
        if target != 'qcow2':
            assert bound >= virtual + virtual // 64
            continue
        proc = subprocess.run(
            ['qemu-img', 'measure', '--output=json', '-O', 'qcow2'] + opts
            + ['--size', str(virtual)], capture_output=True, text=True)
        if 'too large' in proc.stderr:
            continue  # 1 TiB with 512-byte clusters: qemu refuses it
        assert proc.returncode == 0, proc.stderr
        assert bound >= json.loads(proc.stdout)['fully-allocated'], \
            (virtual, bound)


@pytest.mark.parametrize('change', [None, 'truncate'])
def test_a_source_truncated_under_the_conversion_fails_it(
        tmp_path, change):
    # qemu reads past the end of a truncated qcow2 as zeros, so without
    # the check the conversion "succeeds" with the data lost.
    staging = tmp_path / 'staging'
    staging.mkdir()
    src = imagefactory.make_image(staging, 'qcow2', size=16 * MiB)
    work = tmp_path / 'work'
    work.mkdir()

    def truncating(runner):
        def run(args, limits, **options):
            if args[0] == 'convert' and change:
                os.truncate(src, os.path.getsize(src) // 2)
            return runner(args, limits, **options)
        return run

    settings = hostile_corpus.pipeline_settings('raw')
    with qemu_img.using(truncating):
        if not change:
            conversion.convert_image(src, 'qcow2', image_id=IMAGE,
                                     work_dir=str(work), settings=settings)
            return
        with pytest.raises(errors.ConversionFailed) as exc:
            conversion.convert_image(src, 'qcow2', image_id=IMAGE,
                                     work_dir=str(work), settings=settings)
    assert 'changed during the conversion' in str(exc.value)
    assert os.listdir(work) == []
