"""Glance's settings that undo the plugin, read from real configuration
files the way ``check-config`` reads them."""

import pytest

from glance_convert.cmd import check_config
from glance_convert.cmd import glance_rules
from glance_convert.flow import glance_conf
from glance_convert.flow.settings import ERROR
from glance_convert.flow.settings import OK
from glance_convert.flow.settings import WARNING

GiB = 1024 ** 3


@pytest.fixture
def etc(tmp_path):
    """Write glance-api.conf (+ policy.yaml) and load it as glance-api."""
    directory = tmp_path / 'etc'
    directory.mkdir()

    def write(api='', policy='"upload_image": "role:admin"\n'):
        (directory / 'glance-api.conf').write_text(api)
        if policy is not None:
            (directory / 'policy.yaml').write_text(policy)
        return glance_conf.load(str(directory)), str(directory)
    return write


def by(found, check):
    return [(f.severity, f.message) for f in found if f.check == check]


# -- upload_image ---------------------------------------------------------

@pytest.mark.parametrize('policy,severity', [
    (None, WARNING),                                    # no policy file
    ('{}\n', WARNING),                                  # Glance's default
    ('"upload_image": "role:member"\n', WARNING),
    ('"upload_image": "role:admin"\n', OK),
    ('"upload_image": "!"\n', OK),
    ('"upload_image": "rule:context_is_admin"\n', OK),
])
def test_upload_policy(etc, policy, severity):
    conf, config_dir = etc(policy=policy)
    [(found, message)] = by(glance_rules.check_upload_policy(conf,
                                                             config_dir),
                            'upload_policy')
    assert found == severity, message
    if severity == WARNING:
        assert 'PUT /v2/images/{id}/file' in message


def test_upload_policy_file_named_in_the_configuration(etc, tmp_path):
    policy = tmp_path / 'elsewhere.yaml'
    policy.write_text('"upload_image": "role:admin"\n')
    conf, config_dir = etc('[oslo_policy]\npolicy_file = %s\n' % policy,
                           policy='"upload_image": ""\n')
    [(found, message)] = by(glance_rules.check_upload_policy(conf,
                                                             config_dir),
                            'upload_policy')
    assert found == OK and str(policy) in message


def test_unreadable_policy_file_is_an_error(etc):
    conf, config_dir = etc(policy='"upload_image": [unclosed\n')
    [(found, _)] = by(glance_rules.check_upload_policy(conf, config_dir),
                      'upload_policy')
    assert found == ERROR


# -- thin provisioning ----------------------------------------------------

MULTI_STORE = ('[DEFAULT]\nenabled_backends = fs:file, ceph:rbd\n'
               '[glance_convert]\noutput_format = %s\n')


def test_thick_file_and_rbd_stores_warn_for_raw_output(etc):
    conf, _ = etc(MULTI_STORE % 'raw')
    found = by(glance_rules.check_thin_provisioning(conf),
               'thin_provisioning')
    assert [s for s, _ in found] == [WARNING, WARNING]
    assert '[fs] (file)' in found[0][1] and '[ceph] (rbd)' in found[1][1]


def test_thin_stores_are_fine(etc):
    conf, _ = etc(MULTI_STORE % 'raw'
                  + '[fs]\nfilesystem_thin_provisioning = True\n'
                  '[ceph]\nrbd_thin_provisioning = True\n')
    assert [s for s, _ in by(glance_rules.check_thin_provisioning(conf),
                             'thin_provisioning')] == [OK, OK]


def test_single_store_is_read_from_glance_store(etc):
    conf, _ = etc('[glance_store]\nstores = file, http\n')
    [(found, message)] = by(glance_rules.check_thin_provisioning(conf),
                            'thin_provisioning')
    assert found == WARNING and '[glance_store] (file)' in message


def test_thin_provisioning_matters_for_raw_only(etc):
    conf, _ = etc(MULTI_STORE % 'qcow2')
    assert glance_rules.check_thin_provisioning(conf) == []


# -- image_size_cap -----------------------------------------------------------

def test_max_virtual_size_above_the_cap_warns(etc):
    conf, _ = etc('[DEFAULT]\nimage_size_cap = %d\n[glance_convert]\n'
                  'max_virtual_size = %d\n' % (10 * GiB, 20 * GiB))
    [(found, message)] = by(glance_rules.check_size_cap(conf),
                            'image_size_cap')
    assert found == WARNING and 'refused by Glance at upload' in message


def test_max_virtual_size_defaults_to_the_cap(etc):
    conf, _ = etc('[DEFAULT]\nimage_size_cap = %d\n' % (10 * GiB))
    [(found, _)] = by(glance_rules.check_size_cap(conf), 'image_size_cap')
    assert found == OK


# -- disk and container formats --------------------------------------------

def test_source_format_glance_does_not_allow(etc):
    conf, _ = etc('[image_format]\ndisk_formats = raw, qcow2, vmdk\n'
                  '[glance_convert]\nsource_formats = qcow2, vmdk, vhdx\n')
    [(found, message)] = by(glance_rules.check_formats(conf),
                            'image_format')
    assert found == WARNING and 'vhdx' in message


def test_container_formats_without_bare_is_an_error(etc):
    conf, _ = etc('[image_format]\ncontainer_formats = ova, compressed\n')
    assert (ERROR, ) == tuple(
        s for s, _ in by(glance_rules.check_formats(conf), 'image_format'))


def test_format_match_turned_off_warns(etc):
    conf, _ = etc('[image_format]\nrequire_image_format_match = False\n')
    [(found, message)] = by(glance_rules.check_formats(conf),
                            'image_format')
    assert found == WARNING and 'require_image_format_match' in message


def test_glance_defaults_allow_everything(etc):
    conf, _ = etc()
    assert [s for s, _ in by(glance_rules.check_formats(conf),
                             'image_format')] == [OK]


# -- through check-config ---------------------------------------------------

def test_check_config_reports_every_rule(etc, tmp_path):
    staging = tmp_path / 'staging'
    staging.mkdir()
    _, config_dir = etc(
        '[DEFAULT]\nnode_staging_uri = file://%s\nimage_size_cap = %d\n'
        '[glance_convert]\nmax_virtual_size = %d\n'
        '[image_format]\nrequire_image_format_match = False\n'
        % (staging, GiB, 2 * GiB), policy=None)
    found = check_config.check_host(config_dir)
    warned = {f.check for f in found if f.severity == WARNING}
    assert {'upload_policy', 'thin_provisioning', 'image_size_cap',
            'image_format'} <= warned
    assert all(f.fix for f in found if f.severity != OK)
