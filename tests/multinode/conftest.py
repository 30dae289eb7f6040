"""Fixtures: PostgreSQL, Keystone and two glance-api nodes, for the session.

Starting them costs about a minute (more the first time, when Keystone's
virtualenv is built), so they are shared by every multi-node test and
stopped at the end of the session, by their pids.
"""

import os

import pytest

from tests import pgcluster
from tests.multinode import keystone
from tests.multinode import nodes

MiB = 1024 * 1024

#: Conversions per node; the tests check it is never exceeded.
SLOTS = 2

#: The plugin's options on every node.  raw -> qcow2 with zlib compression
#: of random data is the slowest conversion per byte, so a few dozen MiB
#: keep qemu-img running long enough to be seen (and killed).
PLUGIN_CONF = {
    'output_format': 'qcow2',
    'qcow2_compression': 'zlib',
    'max_concurrent_conversions': SLOTS,
    'reserved_space_mb': 0,
    'slot_wait_timeout': 300,
    'progress_interval': 1,
}


@pytest.fixture(scope='session')
def postgres(tmp_path_factory):
    yield from pgcluster.running(tmp_path_factory.mktemp('pg'))


@pytest.fixture(scope='session')
def keystone_server(tmp_path_factory):
    server = keystone.KeystoneServer(str(tmp_path_factory.mktemp('keystone')))
    with server:
        admin = server.admin()
        admin.account(nodes.SERVICE_USER, nodes.SERVICE_PASSWORD,
                      nodes.SERVICE_PROJECT, ['admin', 'service'])
        admin.account(nodes.DEMO_USER, nodes.DEMO_PASSWORD,
                      nodes.DEMO_PROJECT, ['member', 'reader'])
        yield server


@pytest.fixture(scope='session')
def token(keystone_server):
    """A demo user's project-scoped token (member, reader)."""
    value, _ = keystone.issue_token(keystone_server.url, nodes.DEMO_USER,
                                    nodes.DEMO_PASSWORD, nodes.DEMO_PROJECT)
    return value


class Cluster:
    """Nodes started on demand; all of them stopped at the end."""

    def __init__(self, base_dir, keystone_url, database_url, token):
        self.base_dir = base_dir
        self.token = token
        self.keystone_url = keystone_url
        self.database_url = database_url
        # One lock directory for every node, as two Glance services on one
        # machine often have: the plugin must keep their slots and ledgers
        # apart by work directory.
        self.lock_path = os.path.join(base_dir, 'locks')
        os.makedirs(self.lock_path, exist_ok=True)
        self.nodes = []

    def start_node(self, name, **kwargs):
        kwargs.setdefault('plugin_conf', PLUGIN_CONF)
        kwargs.setdefault('lock_path', self.lock_path)
        node = nodes.Node(os.path.join(self.base_dir, name), name=name,
                          keystone_url=self.keystone_url,
                          database_url=self.database_url,
                          token=self.token, **kwargs)
        self.nodes.append(node)    # a failed start is still stopped
        node.start()
        return node

    def stop_all(self):
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope='session')
def cluster(tmp_path_factory, qemu_tools, postgres, keystone_server, token):
    c = Cluster(str(tmp_path_factory.mktemp('cluster')),
                keystone_server.url, postgres.url, token)
    try:
        yield c
    finally:
        c.stop_all()


@pytest.fixture(scope='session')
def node_a(cluster):
    return cluster.start_node('node-a')


@pytest.fixture(scope='session')
def node_b(cluster):
    return cluster.start_node('node-b')


def random_raw(path, nbytes):
    with open(path, 'wb') as f:
        for _ in range(nbytes // MiB):
            f.write(os.urandom(MiB))
    return str(path)


@pytest.fixture(scope='session')
def images(tmp_path_factory):
    """Raw images of random data: 'small' (24 MiB) and 'slow' (96 MiB)."""
    d = tmp_path_factory.mktemp('multinode-images')
    return {'small': random_raw(d / 'small.raw', 24 * MiB),
            'slow': random_raw(d / 'slow.raw', 96 * MiB)}
