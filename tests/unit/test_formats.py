"""The table of formats: each row holds every rule of its format."""

import pytest

from glance_convert import formats
from glance_convert import options

MiB = 1024 * 1024
GiB = 1024 * MiB
ROWS = list(formats.FORMATS.values())
OPTION_NAMES = {o.name for o in options.ALL_OPTS}
# A value other than the default for every option a row may read.
NON_DEFAULT = {'qcow2_compat': '0.10', 'qcow2_cluster_size': 4096,
               'qcow2_compression': 'zlib', 'vmdk_subformat':
               'streamOptimized', 'vhd_subformat': 'fixed',
               'vhd_force_size': True, 'vhdx_subformat': 'fixed'}


@pytest.fixture
def group(load_conf):
    def make(**values):
        text = '[glance_convert]\n' + ''.join(
            '%s = %s\n' % item for item in values.items())
        return load_conf(text)[options.GROUP]
    return make


def test_names_map_both_ways():
    assert formats.qemu_driver('vhd') == 'vpc'
    assert formats.CONVERTIBLE == tuple(formats.FORMATS)
    for row in ROWS:
        assert formats.get(row.name) is row
        if row.inspector is not None:
            assert formats.glance_name_for_inspector(
                row.inspector) == row.name
    assert formats.glance_name_for_inspector('gpt') == 'raw'
    with pytest.raises(ValueError):
        formats.qemu_driver('iso')


def test_every_output_option_is_a_real_option_of_one_row():
    named = [n for row in ROWS for n in row.option_names]
    assert len(named) == len(set(named))
    assert set(named) <= OPTION_NAMES
    assert set(NON_DEFAULT) == set(named)


@pytest.mark.parametrize('row', ROWS, ids=lambda r: r.name)
def test_a_row_reads_no_other_rows_options(row, group):
    """Another format's options never reach this format's ``-o``."""
    others = {n: v for n, v in NON_DEFAULT.items()
              if n not in row.option_names}
    assert row.output_options(group()) == row.output_options(
        group(**others))


@pytest.mark.parametrize('row', ROWS, ids=lambda r: r.name)
def test_preallocation_reaches_only_rows_that_take_it(row, group):
    for mode in ('metadata', 'falloc', 'full'):
        opts, _compressed = row.output_options(group(preallocation=mode))
        assert (opts.get('preallocation') == mode) is (
            mode in row.preallocation)


@pytest.mark.parametrize('name,values,rewritten', [
    ('qcow2', {}, False),
    ('qcow2', {'qcow2_compat': '0.10'}, False),
    ('qcow2', {'qcow2_cluster_size': 4096}, True),
    ('qcow2', {'qcow2_compression': 'zstd'}, True),
    ('qcow2', {'preallocation': 'metadata'}, True),
    ('vhd', {}, False),
    ('vhd', {'vhd_subformat': 'fixed'}, True),
    ('vhd', {'vhd_force_size': True}, True),
    ('vmdk', {}, False),
    ('vmdk', {'vmdk_subformat': 'streamOptimized'}, True),
    ('raw', {'preallocation': 'full'}, False),
    ('vdi', {}, False),
    ('vhdx', {}, False),
    ('vhdx', {'vhdx_subformat': 'fixed'}, True),
])
def test_same_format_rewrite_follows_the_options(name, values, rewritten,
                                                 group):
    row = formats.get(name)
    opts, compressed = row.output_options(group(**values))
    assert row.rewrites_same_format(opts, compressed) is rewritten


@pytest.mark.parametrize('row', ROWS, ids=lambda r: r.name)
def test_upper_bound_is_at_least_the_virtual_size(row):
    for size in (MiB, 10 * GiB):
        bound = row.upper_bound(size, {})
        assert bound >= size
        if row is formats.raw.FORMAT:
            assert bound == size
        elif row is formats.vhdx.FORMAT:
            # 8 bytes of BAT per block of at least 1 MiB: far below 1/64;
            # tests/functional/pipeline/test_pipeline_calls.py holds the
            # bound against fixed VHDX files qemu-img writes.
            assert bound > size + size // MiB * 8
        elif row is formats.ploop.FORMAT:
            # 4 bytes of BAT per 1 MiB cluster, and the driver's
            # preallocation while it writes.
            assert bound > size + formats.ploop.QEMU_PREALLOCATION
        else:
            assert bound >= size + size // 64


def test_smaller_qcow2_clusters_raise_the_bound():
    small = formats.qcow2.FORMAT.upper_bound(GiB, {'cluster_size': 512})
    assert small > formats.qcow2.FORMAT.upper_bound(GiB, {})
    assert small >= GiB + GiB * 16 // 512  # 16 bytes per cluster


def test_measure_only_where_qemu_can_tell():
    assert formats.qcow2.FORMAT.measure_as_qcow2({'compat': '1.1'}) == {
        'compat': '1.1'}
    assert formats.raw.FORMAT.measure_as_qcow2({}) == {}
    raw = formats.raw.FORMAT
    assert raw.measure_as_qcow2({'preallocation': 'full'}) is None
    for row in (formats.vmdk.FORMAT, formats.vdi.FORMAT, formats.vhd.FORMAT):
        assert row.measure_as_qcow2({}) is None


def test_only_vhd_with_force_size_is_presized():
    assert formats.vhd.FORMAT.presize(MiB + 1, {'force_size': True}) == 2 * MiB
    assert formats.vhd.FORMAT.presize(MiB + 1, {}) is None
    for row in ROWS:
        if row is not formats.vhd.FORMAT:
            assert row.presize(MiB + 1, {'force_size': True}) is None


def test_out_of_order_default_and_parallel_eligibility():
    assert [r.name for r in ROWS if r.out_of_order] == ['qcow2']
    assert [r.name for r in ROWS if r.parallel_output] == ['raw']
    assert set(formats.vmdk.FORMAT.parallel_subformats) == {
        'streamOptimized', 'monolithicSparse'}
