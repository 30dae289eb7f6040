"""Fixtures of the fault matrix: one PostgreSQL cluster for the session,
source images, and the shared host most cases break."""

import os

import pytest

from tests import pgcluster
from tests.faults import harness


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'quick: the representative subset of the fault matrix '
        'that the README\'s test command runs (-m quick)')


@pytest.fixture(scope='session')
def pg(tmp_path_factory, qemu_tools):
    yield from pgcluster.running(tmp_path_factory.mktemp('faults-pg'))


@pytest.fixture(scope='session')
def images(tmp_path_factory):
    return harness.Images(tmp_path_factory.mktemp('faults-images'))


@pytest.fixture(scope='session')
def hosts_dir(tmp_path_factory):
    return tmp_path_factory.mktemp('faults-hosts')


@pytest.fixture(scope='module')
def host(pg, hosts_dir):
    """The shared host: raw output, 4 slots, 48 MiB of work space, and a
    store that writes in small chunks so an upload lasts long enough to
    be caught."""
    h = harness.Host(hosts_dir, pg, 'shared', plugin_conf={
        'max_workspace_bytes': 48 * harness.MiB,
        'reserved_space_mb': 0,
    }, extra_conf={'fs': {'filesystem_store_chunk_size': 512}})
    with harness.running(h):
        yield h


@pytest.fixture
def root():
    if os.geteuid() != 0:
        pytest.skip('needs root: mounts a file system')
