"""``glance-convert recover`` as a subprocess: command line, configuration
and database errors, and a run against a real (synced, sqlite) Glance
database without a running glance-api."""

import json
import os
import subprocess
import sys

import pytest

from glance_convert.cmd import common as cli
from glance_convert.testing import localglance
from glance_convert.host import workspace

IMAGE = '0b7f5c2e-1111-4a4a-9c9c-0123456789ab'


def run(args, cwd):
    env = dict(os.environ)
    env.pop('OS_GLANCE_CONFIG_DIR', None)
    return subprocess.run(
        [sys.executable, '-m', 'glance_convert.cmd'] + [str(a) for a in args],
        cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        timeout=300)


def assert_clean_error(proc, *needles):
    assert proc.returncode == cli.EXIT_FAILED, (proc.stdout, proc.stderr)
    assert 'Traceback' not in proc.stderr, proc.stderr
    assert proc.stderr.startswith('glance-convert: error: '), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def write_conf(directory, text):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, 'glance-api.conf'), 'w') as f:
        f.write(text)
    return directory


@pytest.fixture(scope='module', params=['multi-store', 'single-store'])
def glance(request, tmp_path_factory):
    """A Glance configuration and synced database; glance-api not running.

    Both ways of configuring the staging area: the reserved
    os_glance_staging_store and the older node_staging_uri.
    """
    server = localglance.GlanceServer(
        str(tmp_path_factory.mktemp('glance')),
        multi_store=request.param == 'multi-store')
    server.write_config()
    server.db_sync()
    return server


# --- command line ------------------------------------------------------------

def test_help_names_the_options(tmp_path):
    proc = run(['recover', '--help'], tmp_path)
    assert proc.returncode == 0
    for option in ('--config-dir', '--config-file', '--dry-run', '--json'):
        assert option in proc.stdout


def test_unknown_option_is_a_usage_error(tmp_path):
    proc = run(['recover', '--no-such-option'], tmp_path)
    assert proc.returncode == cli.EXIT_USAGE
    assert 'unrecognized arguments: --no-such-option' in proc.stderr


# --- configuration and database errors ---------------------------------------

def test_missing_config_dir(tmp_path):
    proc = run(['recover', '--config-dir', tmp_path / 'nowhere'], tmp_path)
    assert_clean_error(proc, 'nowhere does not exist')


def test_config_dir_without_glance_api_conf(tmp_path):
    proc = run(['recover', '--config-dir', tmp_path], tmp_path)
    assert_clean_error(proc, 'no glance-api.conf in %s' % tmp_path)


def test_missing_extra_config_file(tmp_path):
    conf = write_conf(tmp_path / 'etc', '[DEFAULT]\n')
    proc = run(['recover', '--config-dir', conf, '--config-file',
                tmp_path / 'extra.conf'], tmp_path)
    assert_clean_error(proc, 'extra.conf: no such configuration file')


def test_no_database_connection(tmp_path):
    conf = write_conf(tmp_path / 'etc', '[DEFAULT]\nnode_staging_uri = '
                      'file://%s/\n' % tmp_path)
    proc = run(['recover', '--config-dir', conf], tmp_path)
    assert_clean_error(proc, '[database] connection is not set in',
                       'glance-api.conf')


def test_database_that_cannot_be_opened(tmp_path):
    conf = write_conf(tmp_path / 'etc', '[database]\nconnection = '
                      'sqlite:///%s/missing-dir/glance.sqlite\n' % tmp_path)
    proc = run(['recover', '--config-dir', conf], tmp_path)
    assert_clean_error(proc, 'cannot use the Glance database',
                       'unable to open database file')


def test_database_without_glance_tables(tmp_path):
    (tmp_path / 'empty.sqlite').touch()
    conf = write_conf(tmp_path / 'etc', '[database]\nconnection = '
                      'sqlite:///%s/empty.sqlite\n' % tmp_path)
    proc = run(['recover', '--config-dir', conf], tmp_path)
    assert_clean_error(proc, 'cannot use the Glance database',
                       'no such table')


def test_bad_option_value(tmp_path):
    conf = write_conf(tmp_path / 'etc', '[glance_convert]\n'
                      'max_concurrent_conversions = lots\n')
    proc = run(['recover', '--config-dir', conf], tmp_path)
    assert_clean_error(proc, 'cannot read the configuration',
                       'max_concurrent_conversions')


def test_the_import_conf_is_read_too(tmp_path):
    """glance-image-import.conf is where [glance_convert] usually lives."""
    conf = write_conf(tmp_path / 'etc', '[DEFAULT]\n')
    with open(os.path.join(conf, 'glance-image-import.conf'), 'w') as f:
        f.write('[glance_convert]\nreserved_space_mb = -1\n')
    proc = run(['recover', '--config-dir', conf], tmp_path)
    assert_clean_error(proc, 'cannot read the configuration',
                       'reserved_space_mb')


# --- against a real database -------------------------------------------------

def _ledger_files(server):
    return sorted(os.listdir(server.lock_dir))


def test_nothing_to_recover_touches_nothing(glance, tmp_path):
    before = (glance.staging_files(), _ledger_files(glance))
    proc = run(['recover', '--config-dir', glance.conf_dir], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'Nothing to recover' in proc.stdout
    assert proc.stderr == ''
    assert (glance.staging_files(), _ledger_files(glance)) == before


def test_dead_conversion_of_a_deleted_image(glance, tmp_path):
    """The ledger names a work file of a dead glance-api whose image is not
    in the database: the file goes, the record is reported as skipped."""
    ws = workspace.Workspace(glance.staging_dir, lock_dir=glance.lock_dir,
                             max_concurrent=0, reserved_bytes=0,
                             max_bytes=0)
    child = subprocess.Popen(['true'])
    child.wait()  # a pid that is dead: the holder
    work = ws.work_path(IMAGE, 'out')
    with open(work, 'wb') as f:
        f.write(b'partial')
    os.makedirs(glance.lock_dir, exist_ok=True)
    with open(ws.ledger_path, 'w') as f:
        json.dump({'entries': {'e1': {
            'owner': IMAGE, 'pid': child.pid, 'start': 1, 'bytes': 4096,
            'paths': [work], 'processes': [], 'info': {'task_id': 't1'},
            'active': True}}, 'orphans': []}, f)

    proc = run(['recover', '--config-dir', glance.conf_dir, '--dry-run',
                '--json'], tmp_path)
    assert proc.returncode == 0, proc.stderr
    [entry] = json.loads(proc.stdout)['interrupted']
    assert (entry['image_id'], entry['result']) == (IMAGE, 'skipped')
    assert entry['removed'] == [work]
    assert os.path.exists(work)

    proc = run(['recover', '--config-dir', glance.conf_dir], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'Skipped image %s (import task t1' % IMAGE in proc.stdout
    assert 'the image no longer exists' in proc.stdout
    assert 'removed work file %s' % work in proc.stdout
    assert not os.path.exists(work)
    assert IMAGE not in ' '.join(glance.staging_files())

    proc = run(['recover', '--config-dir', glance.conf_dir], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'Nothing to recover' in proc.stdout


def test_check_config_advises_recover_after_a_crash(tmp_path):
    server = localglance.GlanceServer(str(tmp_path / 'glance'))
    server.write_config()

    def recover_finding():
        proc = run(['check-config', '--json', '--config-dir',
                    server.conf_dir], tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        [found] = [f for f in json.loads(proc.stdout)
                   if f['check'] == 'recover']
        return found

    assert recover_finding()['severity'] == 'ok'
    ws = workspace.Workspace(server.staging_dir, lock_dir=server.lock_dir,
                             max_concurrent=0, reserved_bytes=0,
                             max_bytes=0)
    with open(ws.ledger_path, 'w') as f:
        json.dump({'entries': {}, 'orphans': [
            {'owner': IMAGE, 'info': {'task_id': 't1'}, 'pid': 1,
             'removed': []}]}, f)
    found = recover_finding()
    assert found['severity'] == 'warning'
    assert IMAGE in found['message']
    assert 'glance-convert recover --config-dir %s' % server.conf_dir \
        in found['fix']
