"""Option validation and what is built from the options (the host checks
are in tests/unit/cmd)."""

import pytest

from glance_convert.flow import settings as config_check
from glance_convert import options
from glance_convert.flow import glance_conf

MiB = 1024 * 1024


def make_conf(glance=None, **ours):
    """A parsed ConfigOpts with [glance_convert] and Glance overrides."""
    conf = glance_conf.new_conf()
    conf(args=[], default_config_files=[], use_env=False)
    for name, value in ours.items():
        conf.set_override(name, value, group=options.GROUP)
    for (group, name), value in (glance or {}).items():
        conf.set_override(name, value, group=group)
    return conf


def errors_of(found):
    return [f for f in found if f.severity == config_check.ERROR]


def warnings_of(found):
    return [f for f in found if f.severity == config_check.WARNING]


@pytest.mark.parametrize('target', ['raw', 'qcow2', 'vmdk', 'vdi', 'vhd'])
def test_defaults_are_valid_for_every_target(target):
    assert config_check.validate_options(make_conf(output_format=target)) \
        == []


@pytest.mark.parametrize('overrides,words', [
    ({'output_format': 'raw', 'preallocation': 'metadata'},
     ['metadata', 'qcow2 only']),
    ({'output_format': 'vmdk', 'preallocation': 'falloc'},
     ['does not apply to vmdk']),
    ({'output_format': 'vhd', 'preallocation': 'full'},
     ['does not apply to vhd']),
    ({'output_format': 'vdi', 'preallocation': 'metadata'},
     ['does not apply to vdi']),
    ({'output_format': 'qcow2', 'qcow2_cluster_size': 3000},
     ['3000', 'power of two']),
    ({'output_format': 'raw', 'qcow2_cluster_size': 65535},
     ['power of two']),
    ({'output_format': 'qcow2', 'qcow2_compression': 'zstd',
      'qcow2_compat': '0.10'}, ['zstd', '1.1']),
    ({'output_format': 'qcow2', 'qcow2_compression': 'zlib',
      'preallocation': 'metadata'}, ['cannot be combined']),
])
def test_invalid_combinations_are_errors(overrides, words):
    found = config_check.validate_options(make_conf(**overrides))
    errs = errors_of(found)
    assert len(errs) == 1, found
    for word in words:
        assert word in errs[0].message
    assert errs[0].fix
    with pytest.raises(config_check.InvalidConfiguration) as exc_info:
        config_check.ensure_valid(make_conf(**overrides))
    assert errs[0].message in str(exc_info.value)
    assert 'Fix:' in str(exc_info.value)


@pytest.mark.parametrize('overrides', [
    {'output_format': 'raw', 'preallocation': 'falloc'},
    {'output_format': 'raw', 'preallocation': 'full'},
    {'output_format': 'qcow2', 'preallocation': 'metadata'},
    {'output_format': 'qcow2', 'qcow2_compression': 'zlib',
     'qcow2_compat': '0.10'},
    {'output_format': 'qcow2', 'qcow2_compression': 'zstd',
     'qcow2_cluster_size': 2 * 1024 * 1024},
    {'output_format': 'vhd', 'vhd_subformat': 'fixed',
     'vhd_force_size': True},
])
def test_valid_combinations(overrides):
    assert errors_of(config_check.validate_options(make_conf(**overrides))) \
        == []


def test_vmdk_subformat_must_be_allowed_by_glance():
    conf = make_conf(
        {('image_format', 'vmdk_allowed_types'): ['streamOptimized']},
        output_format='vmdk', vmdk_subformat='monolithicSparse')
    errs = errors_of(config_check.validate_options(conf))
    assert len(errs) == 1
    assert 'vmdk_allowed_types' in errs[0].message
    assert 'monolithicSparse' in errs[0].message
    # Not checked when the output is not vmdk.
    conf.set_override('output_format', 'raw', group=options.GROUP)
    assert errors_of(config_check.validate_options(conf)) == []


def test_output_format_must_be_a_glance_disk_format():
    conf = make_conf({('image_format', 'disk_formats'): ['raw', 'qcow2']},
                     output_format='vhd')
    errs = errors_of(config_check.validate_options(conf))
    assert len(errs) == 1
    assert 'disk_formats' in errs[0].message
    assert 'add vhd' in errs[0].fix


def test_options_for_another_format_are_warned_about():
    found = config_check.validate_options(make_conf(
        output_format='raw', qcow2_compression='zstd', vhd_force_size=True))
    assert errors_of(found) == []
    names = sorted(w.message.split()[0] for w in warnings_of(found))
    assert names == ['qcow2_compression', 'vhd_force_size']


def test_out_of_order_with_compression_is_a_warning():
    found = config_check.validate_options(make_conf(
        output_format='qcow2', qcow2_compression='zstd',
        convert_out_of_order=True))
    assert errors_of(found) == []
    assert any('convert_out_of_order' in w.message
               for w in warnings_of(found))


def test_validation_reads_the_global_conf_without_glance_options():
    """In the CLI or tests Glance's options may not be registered."""
    from oslo_config import cfg
    conf = cfg.ConfigOpts()
    conf.register_opts(options.ALL_OPTS, group=options.GROUP)
    conf(args=[], default_config_files=[], use_env=False)
    conf.set_override('output_format', 'vmdk', group=options.GROUP)
    assert config_check.validate_options(conf) == []


def test_host_workspace_reads_the_options(tmp_path):
    from oslo_config import cfg
    conf = cfg.ConfigOpts()
    conf.register_opts(options.ALL_OPTS, group=options.GROUP)
    conf([], project='test')
    conf.set_override('max_concurrent_conversions', 3, options.GROUP)
    conf.set_override('reserved_space_mb', 7, options.GROUP)
    conf.set_override('max_workspace_bytes', 12345, options.GROUP)
    conf.set_override('work_dir', str(tmp_path / 'w'), options.GROUP)
    ws = config_check.host_workspace(conf=conf)
    assert (ws.work_dir, ws.lock_dir) == (str(tmp_path / 'w'),) * 2
    assert (ws.max_concurrent, ws.reserved_bytes, ws.max_bytes) == (
        3, 7 * MiB, 12345)
    conf.register_opts([cfg.StrOpt('lock_path')], group='oslo_concurrency')
    conf.set_override('lock_path', str(tmp_path / 'l'), 'oslo_concurrency')
    ws = config_check.host_workspace(str(tmp_path / 'other'),
                                     conf=conf)
    assert (ws.work_dir, ws.lock_dir) == (str(tmp_path / 'other'),
                                          str(tmp_path / 'l'))
