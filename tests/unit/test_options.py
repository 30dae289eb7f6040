"""Options: defaults and the deprecated alias (Glance's settings: see
tests/unit/flow/test_glance_conf.py)."""

import pytest

from glance_convert import options
from glance_convert.flow import settings


@pytest.fixture
def conf(load_conf):
    return load_conf


def test_default_target_is_raw(conf):
    assert conf('')[options.GROUP].output_format == 'raw'


def test_in_tree_plugin_setting_is_a_deprecated_alias(conf):
    c = conf('[image_conversion]\noutput_format = qcow2\n')
    assert c[options.GROUP].output_format == 'qcow2'
    assert settings.from_conf(c).target == 'qcow2'


def test_own_setting_wins_over_alias(conf):
    c = conf('[image_conversion]\noutput_format = qcow2\n'
             '[glance_convert]\noutput_format = vhd\n')
    assert c[options.GROUP].output_format == 'vhd'


def test_unknown_target_is_refused(conf):
    c = conf('[glance_convert]\noutput_format = aki\n')
    with pytest.raises(ValueError):
        c[options.GROUP].output_format


def test_list_opts_covers_every_option():
    (group, opts), = options.list_opts()
    assert group == 'glance_convert'
    names = {o.name for o in opts}
    assert {'output_format', 'work_dir', 'max_concurrent_conversions',
            'convert_timeout', 'max_virtual_size'} <= names
    assert all(o.help for o in opts)
