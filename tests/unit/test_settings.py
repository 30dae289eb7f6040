"""Option validation and the host checks behind ``check-config``."""

import os
import stat
import sys

import pytest

from glance_convert import settings as config_check
from glance_convert import options


def make_conf(glance=None, **ours):
    """A parsed ConfigOpts with [glance_convert] and Glance overrides."""
    conf = config_check.new_conf()
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


# --- check_host --------------------------------------------------------------

def write_conf(directory, api, image_import='[image_import_opts]\n'
               'image_import_plugins = [glance_convert]\n'):
    directory.mkdir(exist_ok=True)
    (directory / 'glance-api.conf').write_text(api)
    if image_import is not None:
        (directory / 'glance-image-import.conf').write_text(image_import)
    return str(directory)


def good_api_conf(tmp_path):
    staging = tmp_path / 'staging'
    staging.mkdir(exist_ok=True)
    locks = tmp_path / 'locks'
    locks.mkdir(exist_ok=True)
    return ('[DEFAULT]\nnode_staging_uri = file://%s\n'
            '[wsgi]\npython_interpreter = %s\n'
            '[oslo_concurrency]\nlock_path = %s\n'
            '[glance_convert]\noutput_format = qcow2\n'
            'reserved_space_mb = 0\n' % (staging, sys.executable, locks))


def by_check(found, check):
    return [f for f in found if f.check == check]


def test_good_config_has_no_errors_or_warnings(tmp_path):
    config_dir = write_conf(tmp_path / 'etc', good_api_conf(tmp_path))
    found = config_check.check_host(config_dir)
    assert errors_of(found) == [] and warnings_of(found) == [], found
    for check in ('config', 'qemu-img', 'plugin', 'work_dir', 'lock_path',
                  'options'):
        assert by_check(found, check), check
    work = by_check(found, 'work_dir')[0].message
    assert str(tmp_path / 'staging') in work and 'free' in work


def test_missing_plugin_and_the_in_tree_plugin(tmp_path):
    config_dir = write_conf(
        tmp_path / 'etc', good_api_conf(tmp_path),
        '[image_import_opts]\nimage_import_plugins = [image_conversion]\n')
    errs = errors_of(config_check.check_host(config_dir))
    messages = ' '.join(e.message for e in errs)
    assert 'glance_convert is not in' in messages
    assert 'converted twice' in messages
    assert all(e.check == 'plugin' for e in errs)


def test_work_dir_missing(tmp_path):
    api = good_api_conf(tmp_path) + 'work_dir = %s\n' % (tmp_path / 'nope')
    errs = errors_of(config_check.check_host(write_conf(tmp_path / 'etc',
                                                        api)))
    assert [e.check for e in errs] == ['work_dir']
    assert 'does not exist' in errs[0].message
    assert 'install -d' in errs[0].fix


@pytest.mark.skipif(os.geteuid() == 0, reason='root can write anywhere')
def test_work_dir_not_writable(tmp_path):
    ro = tmp_path / 'ro'
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    api = good_api_conf(tmp_path) + 'work_dir = %s\n' % ro
    errs = errors_of(config_check.check_host(write_conf(tmp_path / 'etc',
                                                        api)))
    assert [e.check for e in errs] == ['work_dir']


def test_remote_staging_without_work_dir(tmp_path):
    api = good_api_conf(tmp_path).replace(
        'node_staging_uri = file://', 'node_staging_uri = rbd://')
    errs = errors_of(config_check.check_host(write_conf(tmp_path / 'etc',
                                                        api)))
    assert [e.check for e in errs] == ['work_dir']
    assert 'not a local file://' in errs[0].message


def test_multistore_staging_dir_is_used(tmp_path):
    staging = tmp_path / 'ms-staging'
    staging.mkdir()
    api = good_api_conf(tmp_path) + (
        '[DEFAULT]\nenabled_backends = fs:file\n'
        '[os_glance_staging_store]\nfilesystem_store_datadir = %s\n'
        % staging)
    found = config_check.check_host(write_conf(tmp_path / 'etc', api))
    assert str(staging) in by_check(found, 'work_dir')[0].message


def test_reserved_space_larger_than_free_space_warns(tmp_path):
    api = good_api_conf(tmp_path).replace('reserved_space_mb = 0',
                                          'reserved_space_mb = 1000000000')
    found = config_check.check_host(write_conf(tmp_path / 'etc', api))
    assert [w.check for w in warnings_of(found)] == ['work_dir']


def test_lock_path_unset_warns_and_bad_lock_path_fails(tmp_path):
    api = good_api_conf(tmp_path)
    unset = api.replace('lock_path = ', '# lock_path = ')
    found = config_check.check_host(write_conf(tmp_path / 'a', unset))
    assert [w.check for w in warnings_of(found)] == ['lock_path']
    assert errors_of(found) == []

    one = unset.replace('[DEFAULT]\n', '[DEFAULT]\nworkers = 1\n', 1)
    found = config_check.check_host(write_conf(tmp_path / 'b', one))
    assert warnings_of(found) == []

    bad = api.replace(str(tmp_path / 'locks'), str(tmp_path / 'gone'))
    errs = errors_of(config_check.check_host(write_conf(tmp_path / 'c',
                                                        bad)))
    assert [e.check for e in errs] == ['lock_path']


def test_invalid_options_are_reported(tmp_path):
    api = good_api_conf(tmp_path) + 'preallocation = metadata\n'
    api = api.replace('output_format = qcow2', 'output_format = raw')
    errs = errors_of(config_check.check_host(write_conf(tmp_path / 'etc',
                                                        api)))
    assert [e.check for e in errs] == ['options']


def test_bad_value_and_broken_file_are_reported_not_raised(tmp_path):
    api = good_api_conf(tmp_path).replace('output_format = qcow2',
                                          'output_format = vhdx')
    errs = errors_of(config_check.check_host(write_conf(tmp_path / 'a',
                                                        api)))
    assert [e.check for e in errs] == ['config']
    assert 'vhdx' in errs[0].message

    errs = errors_of(config_check.check_host(write_conf(
        tmp_path / 'b', 'this is not an ini file\n[')))
    assert [e.check for e in errs] == ['config']


def test_missing_config_dir_and_file(tmp_path):
    errs = errors_of(config_check.check_host(str(tmp_path / 'nothing')))
    assert [e.check for e in errs] == ['config']
    empty = tmp_path / 'empty'
    empty.mkdir()
    errs = errors_of(config_check.check_host(str(empty)))
    assert 'No glance-api.conf' in errs[0].message


def test_deprecated_alias_is_read_and_warned_about(tmp_path):
    api = good_api_conf(tmp_path).replace(
        '[glance_convert]\noutput_format = qcow2\n',
        '[image_conversion]\noutput_format = vmdk\n[glance_convert]\n')
    config_dir = write_conf(tmp_path / 'etc', api)
    found = config_check.check_host(config_dir)
    assert any('deprecated alias' in w.message for w in warnings_of(found))
    conf = config_check.load(config_dir)
    assert conf[options.GROUP].output_format == 'vmdk'


def test_qemu_img_missing(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))
    found = config_check.check_qemu_img()
    assert [f.severity for f in found] == [config_check.ERROR]
    assert 'not installed' in found[0].message
