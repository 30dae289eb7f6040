"""The host checks behind ``glance-convert check-config``."""

import json
import os
import pathlib
import pwd
import shutil
import stat
import sys
import tempfile

import pytest

from glance_convert import options
from glance_convert.flow import settings as config_check
from glance_convert.cmd import check_config
from glance_convert.flow import glance_conf
from glance_convert.host import layout as layout_
from glance_convert.host import watch


def errors_of(found):
    return [f for f in found if f.severity == config_check.ERROR]


def warnings_of(found):
    return [f for f in found if f.severity == config_check.WARNING]


# --- check_host --------------------------------------------------------------

def write_conf(directory, api, image_import='[image_import_opts]\n'
               'image_import_plugins = [glance_convert]\n',
               policy='"upload_image": "role:admin"\n'):
    directory.mkdir(exist_ok=True)
    (directory / 'glance-api.conf').write_text(api)
    if policy is not None:
        (directory / 'policy.yaml').write_text(policy)
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
    found = check_config.check_host(config_dir)
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
    errs = errors_of(check_config.check_host(config_dir))
    messages = ' '.join(e.message for e in errs)
    assert 'glance_convert is not in' in messages
    assert 'converted twice' in messages
    assert all(e.check == 'plugin' for e in errs)


def test_work_dir_missing(tmp_path):
    api = good_api_conf(tmp_path) + 'work_dir = %s\n' % (tmp_path / 'nope')
    errs = errors_of(check_config.check_host(write_conf(tmp_path / 'etc',
                                                        api)))
    assert [e.check for e in errs] == ['work_dir']
    assert 'does not exist' in errs[0].message
    assert 'install -d' in errs[0].fix


def _check_host_as_nobody(config_dir):
    """check_host's findings as (check, severity, message), run as nobody.

    Root can write anywhere, so as root the check runs in a forked child
    that gives up root for good (setresuid), as glance-api's own user
    would run it.  Not root, it runs as the current user.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: drop root, check, report, exit
        status = 1
        try:
            os.close(read_fd)
            if os.geteuid() == 0:
                nobody = pwd.getpwnam('nobody')
                os.setgroups([])
                os.setresgid(nobody.pw_gid, nobody.pw_gid, nobody.pw_gid)
                os.setresuid(nobody.pw_uid, nobody.pw_uid, nobody.pw_uid)
            found = check_config.check_host(config_dir)
            with os.fdopen(write_fd, 'w') as f:
                json.dump([(x.check, x.severity, x.message) for x in found],
                          f)
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, data
    return json.loads(data)


@pytest.fixture
def shared_tmp():
    """A directory every user can enter (pytest's tmp_path is root's)."""
    path = tempfile.mkdtemp(prefix='check-config-')
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


def _conf_readable_by_all(root):
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)


def test_work_dir_not_writable(shared_tmp):
    api = good_api_conf(shared_tmp)
    etc = write_conf(shared_tmp / 'etc', api)
    _conf_readable_by_all(shared_tmp)
    # The control: every directory writable by the checking user.  (Only
    # the work_dir check counts here: as nobody, this Python's entry
    # points, in root's tox directory, cannot be read.)
    for d in ('staging', 'locks'):
        os.chmod(shared_tmp / d, 0o777)
    found = _check_host_as_nobody(etc)
    assert [sev for c, sev, _ in found if c == 'work_dir'] == [
        config_check.OK], found
    # The work directory is owned by another user and not writable.
    ro = shared_tmp / 'ro'
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP
             | stat.S_IROTH | stat.S_IXOTH)
    etc = write_conf(shared_tmp / 'etc', api + 'work_dir = %s\n' % ro)
    _conf_readable_by_all(shared_tmp / 'etc')
    found = _check_host_as_nobody(etc)
    work_dir = [(sev, msg) for c, sev, msg in found if c == 'work_dir']
    assert [sev for sev, _ in work_dir] == [config_check.ERROR], found
    assert 'cannot create' in work_dir[0][1], work_dir


def test_remote_staging_without_work_dir(tmp_path):
    api = good_api_conf(tmp_path).replace(
        'node_staging_uri = file://', 'node_staging_uri = rbd://')
    errs = errors_of(check_config.check_host(write_conf(tmp_path / 'etc',
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
    found = check_config.check_host(write_conf(tmp_path / 'etc', api))
    assert str(staging) in by_check(found, 'work_dir')[0].message


def test_reserved_space_larger_than_free_space_warns(tmp_path):
    api = good_api_conf(tmp_path).replace('reserved_space_mb = 0',
                                          'reserved_space_mb = 1000000000')
    found = check_config.check_host(write_conf(tmp_path / 'etc', api))
    assert [w.check for w in warnings_of(found)] == ['work_dir']


def test_lock_path_unset_warns_and_bad_lock_path_fails(tmp_path):
    api = good_api_conf(tmp_path)
    unset = api.replace('lock_path = ', '# lock_path = ')
    found = check_config.check_host(write_conf(tmp_path / 'a', unset))
    assert [w.check for w in warnings_of(found)] == ['lock_path']
    assert errors_of(found) == []

    one = unset.replace('[DEFAULT]\n', '[DEFAULT]\nworkers = 1\n', 1)
    found = check_config.check_host(write_conf(tmp_path / 'b', one))
    assert warnings_of(found) == []

    bad = api.replace(str(tmp_path / 'locks'), str(tmp_path / 'gone'))
    errs = errors_of(check_config.check_host(write_conf(tmp_path / 'c',
                                                        bad)))
    assert [e.check for e in errs] == ['lock_path']


def test_invalid_options_are_reported(tmp_path):
    api = good_api_conf(tmp_path) + 'preallocation = metadata\n'
    api = api.replace('output_format = qcow2', 'output_format = raw')
    errs = errors_of(check_config.check_host(write_conf(tmp_path / 'etc',
                                                        api)))
    assert [e.check for e in errs] == ['options']


def test_bad_value_and_broken_file_are_reported_not_raised(tmp_path):
    api = good_api_conf(tmp_path).replace('output_format = qcow2',
                                          'output_format = aki')
    errs = errors_of(check_config.check_host(write_conf(tmp_path / 'a',
                                                        api)))
    assert [e.check for e in errs] == ['config']
    assert 'aki' in errs[0].message

    errs = errors_of(check_config.check_host(write_conf(
        tmp_path / 'b', 'this is not an ini file\n[')))
    assert [e.check for e in errs] == ['config']


def test_missing_config_dir_and_file(tmp_path):
    errs = errors_of(check_config.check_host(str(tmp_path / 'nothing')))
    assert [e.check for e in errs] == ['config']
    empty = tmp_path / 'empty'
    empty.mkdir()
    errs = errors_of(check_config.check_host(str(empty)))
    assert 'No glance-api.conf' in errs[0].message


def test_deprecated_alias_is_read_and_warned_about(tmp_path):
    api = good_api_conf(tmp_path).replace(
        '[glance_convert]\noutput_format = qcow2\n',
        '[image_conversion]\noutput_format = vmdk\n[glance_convert]\n')
    config_dir = write_conf(tmp_path / 'etc', api)
    found = check_config.check_host(config_dir)
    assert any('deprecated alias' in w.message for w in warnings_of(found))
    conf = glance_conf.load(config_dir)
    assert conf[options.GROUP].output_format == 'vmdk'


def test_qemu_img_missing(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))
    found = check_config.check_qemu_img()
    assert [f.severity for f in found] == [config_check.ERROR]
    assert 'not installed' in found[0].message


def test_metrics_off_by_default_and_usable_directories(tmp_path):
    api = good_api_conf(tmp_path)
    found = check_config.check_host(write_conf(tmp_path / 'a', api))
    [off] = by_check(found, 'metrics')
    assert off.severity == config_check.OK and 'off' in off.message

    textfiles = tmp_path / 'textfile'
    textfiles.mkdir()
    on = api + ('metrics_dir = %s\nmetrics_textfile = %s\n'
                % (tmp_path / 'run' / 'metrics',
                   textfiles / 'glance_convert.prom'))
    found = check_config.check_host(write_conf(tmp_path / 'b', on))
    assert warnings_of(found) == [] and errors_of(found) == [], found
    assert 'recorded in %s' % (tmp_path / 'run' / 'metrics') in by_check(
        found, 'metrics')[0].message


def test_unusable_metrics_settings_warn(tmp_path):
    blocker = tmp_path / 'a-file'
    blocker.write_text('')
    api = good_api_conf(tmp_path)
    cases = {
        'blocked': 'metrics_dir = %s\n' % (blocker / 'metrics'),
        'textfile alone': 'metrics_textfile = %s\n' % (tmp_path / 'm.prom'),
        'textfile dir': 'metrics_dir = %s\nmetrics_textfile = %s\n'
                        % (tmp_path / 'm', blocker / 'm.prom'),
        'not .prom': 'metrics_dir = %s\nmetrics_textfile = %s\n'
                     % (tmp_path / 'm', tmp_path / 'm.txt'),
    }
    for i, (case, extra) in enumerate(cases.items()):
        found = check_config.check_host(write_conf(tmp_path / str(i),
                                                   api + extra))
        warned = warnings_of(found)
        assert [w.check for w in warned] == ['metrics'], (case, found)
        assert errors_of(found) == [], case


@pytest.fixture
def systemctl(tmp_path, monkeypatch):
    """``systemctl(active)``: a systemctl first on PATH that says whether
    the recovery timer is active, and records what it was asked."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    asked = tmp_path / 'systemctl-asked'
    monkeypatch.setenv('PATH', '%s:%s' % (bin_dir, os.environ['PATH']))

    def install(active):
        tool = bin_dir / 'systemctl'
        tool.write_text('#!/bin/sh\necho "$@" >> %s\nexit %d\n'
                        % (asked, 0 if active else 3))
        tool.chmod(0o755)
        return asked
    return install


def test_self_healing_is_reported_with_what_to_do(tmp_path, systemctl):
    asked = systemctl(active=False)
    config_dir = write_conf(tmp_path / 'etc', good_api_conf(tmp_path))
    [missing] = check_config.self_healing_findings(config_dir, [])
    assert missing.severity == config_check.WARNING
    assert 'recover --follow' in missing.fix
    assert 'glance-convert-recover' in missing.fix
    ws = config_check.host_workspace(conf=glance_conf.load(config_dir))
    with watch.following(layout_.Layout(ws.work_dir, ws.lock_dir)):
        [running] = check_config.self_healing_findings(config_dir, [])
    assert running.severity == config_check.OK, running
    assert 'within seconds' in running.message
    assert asked.read_text() == 'is-active --quiet %s\n' % (
        check_config.RECOVER_TIMER)


def test_self_healing_by_the_shipped_timer_is_reported(tmp_path, systemctl):
    config_dir = write_conf(tmp_path / 'etc', good_api_conf(tmp_path))
    systemctl(active=True)
    [timer] = check_config.self_healing_findings(config_dir, [])
    assert timer.severity == config_check.OK, timer
    assert check_config.RECOVER_TIMER in timer.message
