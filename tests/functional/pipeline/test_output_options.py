"""Every output option, converted by the pipeline with the real qemu-img.

Settings come from a ConfigOpts, as in glance-api, so the path from an
option in the config file to the qemu-img command line is what is tested.
Each output is checked with ``qemu-img info``/``check`` and its guest data
compared with the source's.
"""

import json
import os
import subprocess

import pytest

from glance_convert.flow import settings as config_check
from glance_convert.pipeline import conversion
from glance_convert import options
from glance_convert.flow import glance_conf
from tests import hostile_corpus
from tests import imagefactory

MiB = 1024 * 1024
#: Not a whole number of MiB, nor of VHD's CHS geometry.
ODD_SIZE = 4 * MiB + 3 * 512


def make_settings(**overrides):
    conf = glance_conf.new_conf()
    conf(args=[], default_config_files=[], use_env=False)
    for name, value in overrides.items():
        conf.set_override(name, value, group=options.GROUP)
    config_check.ensure_valid(conf)  # raises on an invalid combination
    return config_check.from_conf(conf)


@pytest.fixture(scope='module')
def sources(tmp_path_factory):
    """One source image of each format with the same guest data."""
    d = tmp_path_factory.mktemp('sources')
    return {fmt: imagefactory.make_image(d, fmt, size=ODD_SIZE)
            for fmt in ('raw', 'qcow2', 'vmdk', 'vhd', 'vhdx')}


def convert(tmp_path, src, src_fmt, **overrides):
    settings = make_settings(**overrides)
    result = conversion.convert_image(
        src, src_fmt, image_id='img-%d' % len(os.listdir(tmp_path)),
        work_dir=str(tmp_path), settings=settings)
    return result


def check_report(path):
    out = subprocess.run(['qemu-img', 'check', '--output=json', '-f',
                          'qcow2', path], check=True,
                         stdout=subprocess.PIPE).stdout
    return json.loads(out)


def vhd_footer(path):
    with open(path, 'rb') as f:
        f.seek(-512, os.SEEK_END)
        footer = f.read(512)
    assert footer[:8] == b'conectix'
    disk_type = int.from_bytes(footer[60:64], 'big')
    current_size = int.from_bytes(footer[48:56], 'big')
    return disk_type, current_size


def vhdx_blocks_left_allocated(path):
    """The LeaveBlocksAllocated bit of a VHDX: set in fixed disks."""
    _entry, where = hostile_corpus._vhdx_item(
        path, hostile_corpus.VHDX_FILE_PARAMETERS)
    with open(path, 'rb') as f:
        f.seek(where + 4)
        return bool(int.from_bytes(f.read(4), 'little') & 1)


@pytest.mark.parametrize('subformat', ['dynamic', 'fixed'])
@pytest.mark.parametrize('source', ['qcow2', 'vhd'])
def test_vhdx_subformat(tmp_path, sources, source, subformat):
    result = convert(tmp_path, sources[source], source,
                     output_format='vhdx', vhdx_subformat=subformat)
    assert imagefactory.info(result.path, 'vhdx')['format'] == 'vhdx'
    assert vhdx_blocks_left_allocated(result.path) is (subformat == 'fixed')
    assert imagefactory.compare(result.path, 'vhdx', sources[source],
                                source)


@pytest.mark.parametrize('subformat', ['streamOptimized', 'monolithicSparse'])
def test_vmdk_subformat(tmp_path, sources, subformat):
    result = convert(tmp_path, sources['qcow2'], 'qcow2',
                     output_format='vmdk', vmdk_subformat=subformat)
    info = imagefactory.info(result.path, 'vmdk')
    assert info['format-specific']['data']['create-type'] == subformat
    assert imagefactory.compare(result.path, 'vmdk', sources['qcow2'],
                                'qcow2')


@pytest.mark.parametrize('subformat,disk_type', [('fixed', 2),
                                                 ('dynamic', 3)])
def test_vhd_subformat_without_force_size(tmp_path, sources, subformat,
                                          disk_type):
    result = convert(tmp_path, sources['raw'], 'raw', output_format='vhd',
                     vhd_subformat=subformat)
    found_type, size = vhd_footer(result.path)
    assert found_type == disk_type
    info = imagefactory.info(result.path, 'vhd')
    assert info['virtual-size'] == size >= ODD_SIZE
    if subformat == 'fixed':
        # A fixed VHD is the raw disk followed by the 512-byte footer.
        assert os.path.getsize(result.path) == size + 512
    assert imagefactory.compare(result.path, 'vhd', sources['raw'], 'raw')


@pytest.mark.parametrize('subformat,disk_type', [('fixed', 2),
                                                 ('dynamic', 3)])
@pytest.mark.parametrize('source', ['raw', 'qcow2', 'vmdk'])
def test_vhd_force_size_rounds_up_to_whole_mib(tmp_path, sources, source,
                                               subformat, disk_type):
    result = convert(tmp_path, sources[source], source, output_format='vhd',
                     vhd_subformat=subformat, vhd_force_size=True)
    found_type, size = vhd_footer(result.path)
    assert found_type == disk_type
    assert size % MiB == 0
    assert size == 5 * MiB  # ODD_SIZE rounded up, not by CHS geometry
    assert imagefactory.info(result.path, 'vhd')['virtual-size'] == size
    assert result.virtual_size == size
    if subformat == 'fixed':
        assert os.path.getsize(result.path) == size + 512
    assert imagefactory.compare(result.path, 'vhd', sources[source], source)
    # Nothing written past the source's data: the tail reads as zeros.
    assert imagefactory.compare(result.path, 'vhd', sources['raw'], 'raw')


def test_vhd_force_size_keeps_a_whole_mib_size(tmp_path):
    src = imagefactory.make_image(tmp_path, 'qcow2', size=4 * MiB,
                                  name='four.qcow2')
    work = tmp_path / 'work'
    work.mkdir()
    result = convert(work, src, 'qcow2', output_format='vhd',
                     vhd_subformat='fixed', vhd_force_size=True)
    assert vhd_footer(result.path) == (2, 4 * MiB)


@pytest.mark.parametrize('compat', ['0.10', '1.1'])
def test_qcow2_compat(tmp_path, sources, compat):
    result = convert(tmp_path, sources['raw'], 'raw', output_format='qcow2',
                     qcow2_compat=compat)
    info = imagefactory.info(result.path, 'qcow2')
    assert info['format-specific']['data']['compat'] == compat
    assert imagefactory.compare(result.path, 'qcow2', sources['raw'], 'raw')


@pytest.mark.parametrize('cluster_size', [4096, 65536, 2 * MiB])
def test_qcow2_cluster_size(tmp_path, sources, cluster_size):
    result = convert(tmp_path, sources['vhd'], 'vhd', output_format='qcow2',
                     qcow2_cluster_size=cluster_size)
    assert imagefactory.info(result.path, 'qcow2')['cluster-size'] == \
        cluster_size
    assert imagefactory.compare(result.path, 'qcow2', sources['vhd'], 'vhd')


@pytest.mark.parametrize('compression', ['zlib', 'zstd'])
def test_qcow2_compression(tmp_path, sources, compression):
    result = convert(tmp_path, sources['raw'], 'raw', output_format='qcow2',
                     qcow2_compression=compression,
                     convert_out_of_order=True)  # must be ignored
    info = imagefactory.info(result.path, 'qcow2')
    assert info['format-specific']['data']['compression-type'] == \
        compression
    assert check_report(result.path).get('compressed-clusters', 0) > 0
    assert imagefactory.compare(result.path, 'qcow2', sources['raw'], 'raw')


def test_qcow2_uncompressed_has_no_compressed_clusters(tmp_path, sources):
    result = convert(tmp_path, sources['raw'], 'raw', output_format='qcow2')
    assert check_report(result.path).get('compressed-clusters', 0) == 0


@pytest.mark.parametrize('target,mode', [('qcow2', 'metadata'),
                                         ('qcow2', 'falloc'),
                                         ('qcow2', 'full'),
                                         ('raw', 'falloc'),
                                         ('raw', 'full')])
def test_preallocation(tmp_path, sources, target, mode):
    plain = convert(tmp_path, sources['vmdk'], 'vmdk', output_format=target)
    result = convert(tmp_path, sources['vmdk'], 'vmdk', output_format=target,
                     preallocation=mode)
    allocated = os.stat(result.path).st_blocks * 512
    plain_allocated = os.stat(plain.path).st_blocks * 512
    if mode == 'metadata':
        # Every L2 table is written: more allocated than without.
        assert allocated > plain_allocated
        assert os.path.getsize(result.path) >= ODD_SIZE
    else:
        assert allocated >= ODD_SIZE > plain_allocated
    assert imagefactory.compare(result.path, target, sources['vmdk'],
                                'vmdk')


# --- same-format pairs ------------------------------------------------------

@pytest.mark.parametrize('fmt,overrides', [
    ('qcow2', {}),
    ('qcow2', {'qcow2_compat': '0.10'}),
    ('raw', {'preallocation': 'full'}),
    ('vmdk', {'vmdk_subformat': 'monolithicSparse'}),
    ('vhd', {'vhd_subformat': 'dynamic'}),
    ('vhdx', {'vhdx_subformat': 'dynamic'}),
])
def test_same_format_passes_through(tmp_path, sources, fmt, overrides):
    result = convert(tmp_path, sources[fmt], fmt, output_format=fmt,
                     **overrides)
    assert not result.converted
    assert result.path == sources[fmt]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('fmt,overrides,check', [
    ('qcow2', {'qcow2_compression': 'zstd'},
     lambda p, info: check_report(p)['compressed-clusters'] > 0),
    ('qcow2', {'preallocation': 'metadata'},
     lambda p, info: os.path.getsize(p) >= ODD_SIZE),
    ('qcow2', {'qcow2_cluster_size': 8192},
     lambda p, info: info['cluster-size'] == 8192),
    ('vmdk', {'vmdk_subformat': 'streamOptimized'},
     lambda p, info: info['format-specific']['data']['create-type']
     == 'streamOptimized'),
    ('vhd', {'vhd_subformat': 'fixed'},
     lambda p, info: vhd_footer(p)[0] == 2),
    ('vhd', {'vhd_force_size': True},
     lambda p, info: info['virtual-size'] == 5 * MiB),
    ('vhdx', {'vhdx_subformat': 'fixed'},
     lambda p, info: vhdx_blocks_left_allocated(p)),
])
def test_same_format_rewritten_when_options_ask(tmp_path, sources, fmt,
                                                overrides, check):
    result = convert(tmp_path, sources[fmt], fmt, output_format=fmt,
                     **overrides)
    assert result.converted
    assert result.path != sources[fmt]
    assert check(result.path, imagefactory.info(result.path, fmt))
    assert imagefactory.compare(result.path, fmt, sources[fmt], fmt)


def test_failed_conversion_removes_the_precreated_vhd(tmp_path, sources,
                                                      monkeypatch):
    """The VHD created before converting into it does not outlive a failure.
    """
    from glance_convert import errors
    from glance_convert.pipeline import qemu_img
    created = []
    real_create = qemu_img.create

    def create(path, *args, **kwargs):
        real_create(path, *args, **kwargs)
        created.append(path)

    def failing_convert(*args, **kwargs):
        raise qemu_img.QemuImgError('qemu-img convert', 1, 'No space left')

    monkeypatch.setattr(qemu_img, 'create', create)
    monkeypatch.setattr(qemu_img, 'convert', failing_convert)
    with pytest.raises(errors.ConversionFailed):
        convert(tmp_path, sources['raw'], 'raw', output_format='vhd',
                vhd_force_size=True)
    assert len(created) == 1
    assert os.listdir(tmp_path) == []
