"""The one configuration loader: the files glance-api reads, in its order.
"""

import os

import pytest
from oslo_config import cfg

from glance_convert import options
from glance_convert.flow import glance_conf
from glance_convert.flow import settings as settings_mod


@pytest.fixture
def conf(load_conf):
    return load_conf


def test_glance_settings_fall_back_to_glance_defaults(conf):
    c = conf('')
    assert glance_conf.glance_setting(
        'image_format', 'vmdk_allowed_types', c) == ['streamOptimized',
                                                     'monolithicSparse']
    assert glance_conf.max_virtual_size(c) == 1 << 40


def test_glance_settings_are_honoured_when_registered(conf):
    c = conf('[DEFAULT]\nimage_size_cap = 1048576\n'
             '[image_format]\nvmdk_allowed_types = streamOptimized\n')
    c.register_opt(cfg.IntOpt('image_size_cap', default=1 << 40))
    c.register_opt(cfg.ListOpt('vmdk_allowed_types'), group='image_format')
    settings = settings_mod.from_conf(c)
    assert settings.policy.max_virtual_size == 1048576
    assert settings.policy.vmdk_allowed_types == ('streamOptimized',)


def test_unregistered_staging_dir_is_unknown_not_glances_default():
    """Outside glance-api the work directory must be configured, not guessed
    from a default Glance would not use there."""
    c = cfg.ConfigOpts()
    c.register_opts(options.ALL_OPTS, group=options.GROUP)
    c([])
    assert glance_conf.staging_dir(c) is None
    assert glance_conf.work_dir(c) is None
    c.set_override('work_dir', '/srv/convert', group=options.GROUP)
    assert glance_conf.work_dir(c) == '/srv/convert'


@pytest.mark.parametrize('api, staging', [
    ('[DEFAULT]\nnode_staging_uri = file:///srv/staging/\n',
     '/srv/staging/'),
    ('[DEFAULT]\nnode_staging_uri = rbd://pool/staging\n', None),
    ('[DEFAULT]\nenabled_backends = fs:file\n'
     '[os_glance_staging_store]\nfilesystem_store_datadir = /srv/ms\n',
     '/srv/ms'),
])
def test_work_dir_defaults_to_glances_staging_dir(tmp_path, api, staging):
    etc = tmp_path / 'etc'
    etc.mkdir()
    (etc / 'glance-api.conf').write_text(api)
    c = glance_conf.load(str(etc))
    assert glance_conf.staging_dir(c) == staging
    assert glance_conf.work_dir(c) == staging


# --- which files, in which order ---------------------------------------------

@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty home directory, so that only the test's .conf.d count."""
    home = tmp_path / 'home'
    home.mkdir()
    monkeypatch.setenv('HOME', str(home))
    monkeypatch.delenv('OS_GLANCE_CONFIG_DIR', raising=False)
    monkeypatch.delenv('OS_GLANCE_CONVERT__OUTPUT_FORMAT', raising=False)
    return home


def write(path, target):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('[glance_convert]\noutput_format = %s\n' % target)
    return str(path)


def test_files_are_read_in_glance_apis_order(tmp_path, home):
    etc = tmp_path / 'etc'
    files = [write(etc / 'glance-image-import.conf', 'qcow2'),
             write(etc / 'glance-api.conf', 'vmdk'),
             write(home / '.glance' / 'glance.conf.d' / 'b.conf', 'vdi'),
             write(home / '.glance' / 'glance-api.conf.d' / 'a.conf', 'vhd'),
             write(home / '.glance' / 'glance-api.conf.d' / 'z.conf', 'raw')]
    extra = write(tmp_path / 'extra.conf', 'qcow2')
    # Not read by glance-api: no .conf suffix, or in the config dir.
    write(home / '.glance' / 'glance-api.conf.d' / 'c.conf.orig', 'vdi')
    write(etc / 'glance-api.conf.d' / 'x.conf', 'vdi')

    assert glance_conf.config_files(str(etc), [extra]) == files + [extra]
    # Each file overrides the ones before it.
    while files:
        c = glance_conf.load(str(etc))
        assert c[options.GROUP].output_format == open(
            files[-1]).read().split()[-1]
        os.unlink(files.pop())
    assert glance_conf.load(str(etc))[options.GROUP].output_format == 'raw'
    assert glance_conf.load(str(etc), [extra])[
        options.GROUP].output_format == 'qcow2'


def test_the_loader_agrees_with_glance_api(tmp_path, home, monkeypatch):
    """What glance.common.wsgi_app.init_app reads, parsed its way."""
    from glance.common import wsgi_app
    etc = tmp_path / 'etc'
    write(etc / 'glance-image-import.conf', 'qcow2')
    write(etc / 'glance-api.conf', 'vmdk')

    def glance_api_reads():
        c = cfg.ConfigOpts()
        c.register_opts(options.ALL_OPTS, group=options.GROUP)
        c([], project='glance', prog='glance-api',
          default_config_files=wsgi_app._get_config_files(
              {'OS_GLANCE_CONFIG_DIR': ' %s ' % etc}))
        return c[options.GROUP].output_format

    monkeypatch.setenv('OS_GLANCE_CONFIG_DIR', ' %s ' % etc)
    assert glance_conf.default_config_dir() == str(etc)
    for step in (None, home / 'glance-api.conf.d' / 'site.conf',
                 home / '.glance' / 'glance.conf.d' / 'site.conf'):
        if step is not None:
            write(step, 'vdi' if 'glance.conf.d' in str(step) else 'vhd')
        ours = glance_conf.load(glance_conf.default_config_dir())
        assert ours[options.GROUP].output_format == glance_api_reads()
    assert glance_api_reads() == 'vhd'


def test_environment_overrides_files_as_in_glance_api(tmp_path, home,
                                                      monkeypatch):
    etc = tmp_path / 'etc'
    write(etc / 'glance-api.conf', 'vmdk')
    monkeypatch.setenv('OS_GLANCE_CONVERT__OUTPUT_FORMAT', 'vdi')
    assert glance_conf.load(str(etc))[options.GROUP].output_format == 'vdi'


def test_no_config_dir_reads_nothing_of_glances(tmp_path, home):
    write(home / 'glance-api.conf.d' / 'a.conf', 'vhd')
    assert glance_conf.config_files(None) == []
    assert glance_conf.load(None)[options.GROUP].output_format == 'raw'


def test_a_missing_extra_file_is_an_error(tmp_path, home):
    with pytest.raises(cfg.ConfigFilesNotFoundError):
        glance_conf.load(None, [str(tmp_path / 'nope.conf')])


def test_bad_values_are_reported_when_loading(tmp_path, home):
    etc = tmp_path / 'etc'
    etc.mkdir()
    (etc / 'glance-api.conf').write_text('[image_format]\n'
                                         'require_image_format_match = '
                                         'perhaps\n')
    with pytest.raises(ValueError):
        glance_conf.load(str(etc))
